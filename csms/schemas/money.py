"""Bills, adjustments, refunds, pending top-ups and receipts."""

from marshmallow import Schema, ValidationError, fields, validate

from csms.schemas.common import Money

MAX_AMOUNT = 1_000_000_00  # minor units: 1,000,000.00


class SignedMoney(Money):
    """Money that may be negative ("-5.00"): an operator's debit."""

    def _jsonschema_type_mapping(self):
        return {"type": "string", "pattern": r"^-?\d+(\.\d{1,2})?$"}


def _nonzero_within(value: int) -> None:
    if value == 0 or abs(value) > MAX_AMOUNT:
        raise ValidationError("must be non-zero and at most 1000000 either way")


class Breakdown(Schema):
    energy = fields.String()
    time = fields.String()
    session_fee = fields.String(data_key="sessionFee")
    tax = fields.String()
    total = fields.String()


class TariffSnapshot(Schema):
    id = fields.Integer(allow_none=True)
    name = fields.String(allow_none=True)
    currency = fields.String(allow_none=True)
    energy_price = fields.String(data_key="energyPrice")
    time_price = fields.String(data_key="timePrice")
    session_fee = fields.String(data_key="sessionFee")
    tax_percent = fields.String(data_key="taxPercent")


class Adjustment(Schema):
    amount = SignedMoney(required=True, validate=_nonzero_within)
    reason = fields.String(required=True, validate=validate.Length(min=1, max=200))
    idempotency_key = fields.String(data_key="idempotencyKey", validate=validate.Length(min=1, max=64))


class SessionRefund(Schema):
    amount = Money(validate=validate.Range(min=1, max=MAX_AMOUNT, error="between 0.01 and 1000000"))
    reason = fields.String(required=True, validate=validate.Length(min=1, max=200))
    idempotency_key = fields.String(data_key="idempotencyKey", validate=validate.Length(min=1, max=64))


class LedgerEntryOut(Schema):
    id = fields.Integer()
    kind = fields.String()
    amount = Money(attribute="amount_minor")
    currency = fields.String()
    session_id = fields.Integer(data_key="sessionId", allow_none=True)
    transaction_id = fields.Integer(data_key="transactionId", allow_none=True)
    created_by_id = fields.Integer(data_key="createdBy", allow_none=True)
    description = fields.String(allow_none=True)
    created_at = fields.DateTime(data_key="createdAt")


class PaymentOut(Schema):
    id = fields.Integer()
    provider = fields.String()
    reference = fields.String(attribute="provider_reference")
    state = fields.String()
    amount = Money(attribute="amount_minor")
    refunded = Money(attribute="refunded_minor")
    currency = fields.String()
    created_at = fields.DateTime(data_key="createdAt")


class TopUpPending(Schema):
    payment = fields.Nested(PaymentOut)
    client_secret = fields.String(data_key="clientSecret")


class ReceiptArgs(Schema):
    format = fields.String(load_default="html", validate=validate.OneOf(["html", "pdf"]))


class WebhookAnswer(Schema):
    received = fields.Boolean()
    outcome = fields.String()
