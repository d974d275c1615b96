from marshmallow import Schema, fields, validate

from csms.schemas.common import ID, Money, page_of
from csms.services import bills


class LedgerEntry(Schema):
    id = fields.Integer()
    kind = fields.String()
    amount = Money(attribute="amount_minor")
    currency = fields.String()
    session_id = fields.Integer(data_key="sessionId", allow_none=True)
    reservation_id = fields.Integer(data_key="reservationId", allow_none=True)
    transaction_id = fields.Integer(data_key="transactionId", allow_none=True)
    created_by_id = fields.Integer(data_key="createdBy", allow_none=True)  # the operator of an adjustment
    description = fields.String(allow_none=True)
    created_at = fields.DateTime(data_key="createdAt")


class Wallet(Schema):
    currency = fields.String()
    available = Money(attribute="available_minor")
    held = Money(attribute="held_minor")
    owed = Money(attribute="owed_minor")  # open balance: charging the wallet could not pay
    ledger = fields.List(fields.Nested(LedgerEntry))
    ledger_total = fields.Integer(data_key="ledgerTotal")


class TopUp(Schema):
    amount = Money(
        required=True, validate=validate.Range(min=1, max=1_000_000_00, error="between 0.01 and 1000000")
    )
    idempotency_key = fields.String(data_key="idempotencyKey", validate=validate.Length(min=1, max=64))


class StartCharging(Schema):
    device_id = fields.String(data_key="deviceId", required=True, validate=validate.Length(min=1, max=48))
    connector_id = fields.Integer(
        data_key="connectorId", required=True, validate=validate.Range(min=1, max=32)
    )
    amount = Money(required=True)


class StopCharging(Schema):
    session_id = fields.Integer(data_key="sessionId", required=True, validate=ID)


class Session(Schema):
    id = fields.Integer()
    charge_point_id = fields.Function(lambda s: s.charge_point.charge_point_id, data_key="deviceId")
    connector_id = fields.Integer(data_key="connectorId")
    state = fields.String()
    currency = fields.String()
    prepaid = Money(attribute="prepaid_minor")
    energy_wh = fields.Integer(data_key="energyWh")
    cost = Money(attribute="cost_minor")
    transaction_id = fields.Integer(data_key="transactionId", allow_none=True)
    charger_response = fields.Dict(data_key="chargerResponse", allow_none=True)
    failure_reason = fields.String(data_key="failureReason", allow_none=True)
    created_at = fields.DateTime(data_key="createdAt")
    started_at = fields.DateTime(data_key="startedAt", allow_none=True)
    stopped_at = fields.DateTime(data_key="stoppedAt", allow_none=True)
    unbilled = Money(attribute="unbilled_minor")  # priced beyond the prepaid amount, not charged
    unbilled_wh = fields.Integer(data_key="unbilledWh")
    refunded = Money(attribute="refunded_minor")
    breakdown = fields.Function(
        lambda s: (bills.bill_view(s.transaction) or {}).get("breakdown"), allow_none=True
    )
    tariff = fields.Function(lambda s: s.transaction.tariff if s.transaction else None, allow_none=True)


class StopResult(Schema):
    session = fields.Nested(Session)
    charger_response = fields.Dict(data_key="chargerResponse")


SessionPage = page_of(Session, "SessionPage")
