"""Money beyond the wallet basics: the Stripe webhook, operators' adjustments and refunds, receipts."""

from __future__ import annotations

from flask import Response, current_app, g, request
from flask_smorest import Blueprint

from csms.api.security import requires
from csms.extensions import db
from csms.models import ChargingSession, Transaction
from csms.schemas.common import INT32_MAX, Error
from csms.schemas.money import Adjustment, LedgerEntryOut, ReceiptArgs, SessionRefund, WebhookAnswer
from csms.services import receipts, wallet
from csms.services.errors import NotFound
from csms.services.payments import stripe as stripe_payments

bp = Blueprint("money", __name__, url_prefix="/api", description="Payments, adjustments, refunds, receipts")


@bp.post("/payments/stripe/webhook")
@bp.response(200, WebhookAnswer)
@bp.alt_response(400, schema=Error, description="the signature does not verify, or not an event")
@bp.alt_response(404, schema=Error, description="CSMS_STRIPE_WEBHOOK_SECRET is not set")
@bp.doc(
    security=[],
    requestBody={"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
)
def stripe_webhook():
    """Stripe's events (payment_intent.succeeded / .payment_failed, charge.refunded), authenticated by
    their Stripe-Signature; served whenever the webhook secret is set, so events of earlier payments
    still land after a switch of provider. A repeated event changes nothing."""
    secret = current_app.config["STRIPE_WEBHOOK_SECRET"]
    if not secret:
        raise NotFound("the Stripe webhook is not configured", code="not_configured")
    event = stripe_payments.verified_event(
        request.get_data(cache=False), request.headers.get("Stripe-Signature"), secret
    )
    return {"received": True, "outcome": stripe_payments.handle(event)}


@bp.post("/cms/users/<int:user_id>/wallet/adjustments")
@requires("operator")
@bp.arguments(Adjustment)
@bp.response(201, LedgerEntryOut)
@bp.alt_response(404, schema=Error)
@bp.alt_response(409, schema=Error, description="a debit beyond the available balance")
def adjust_wallet(body, user_id: int):
    """Credit (amount > 0) or debit (amount < 0) a customer's wallet, with the reason: a ledger entry
    naming the operator. A debit never takes a wallet below zero."""
    _id_or_404(user_id, "user")
    return wallet.adjust(
        user_id,
        body["amount"],
        body["reason"],
        operator_id=g.identity.user_id,
        reference=f"adjustment:{user_id}:{body['idempotency_key']}" if body.get("idempotency_key") else None,
    )


@bp.post("/cms/sessions/<int:session_id>/refunds")
@requires("operator")
@bp.arguments(SessionRefund)
@bp.response(201, LedgerEntryOut)
@bp.alt_response(404, schema=Error)
@bp.alt_response(409, schema=Error, description="not billed yet, or more than it cost")
def refund_session(body, session_id: int):
    """Give a billed session's cost back to the wallet, in full (no amount) or in part, with why; an
    idempotencyKey makes a retry refund once."""
    _id_or_404(session_id, "session")
    key = body.get("idempotency_key")
    return wallet.refund_session(
        session_id,
        body.get("amount"),
        body["reason"],
        operator_id=g.identity.user_id,
        reference=f"session-refund:{session_id}:{key}" if key else None,
    )


@bp.get("/user/charging/sessions/<int:session_id>/receipt")
@requires("customer")
@bp.arguments(ReceiptArgs, location="query")
@bp.response(200, description="the receipt, text/html or application/pdf")
@bp.alt_response(404, schema=Error, description="no such session of yours, or not billed yet")
def session_receipt(args, session_id: int):
    """The receipt of one of the customer's billed sessions, as HTML or PDF."""
    session = db.session.get(ChargingSession, session_id) if 0 < session_id <= INT32_MAX else None
    if session is None or session.user_id != g.identity.user_id or session.transaction_id is None:
        raise NotFound(f"no billed session {session_id}", code="receipt_not_found")
    return _receipt(session.transaction_id, args["format"])


@bp.get("/cms/transactions/<int:transaction_id>/receipt")
@requires("operator")
@bp.arguments(ReceiptArgs, location="query")
@bp.response(200, description="the receipt, text/html or application/pdf")
@bp.alt_response(404, schema=Error, description="no receipt: unknown, not billed, or billed to no one")
def transaction_receipt(args, transaction_id: int):
    """The receipt of a billed transaction, as its customer got it."""
    _id_or_404(transaction_id, "transaction", Transaction)
    return _receipt(transaction_id, args["format"])


def _receipt(transaction_id: int, kind: str) -> Response:
    found = receipts.of_transaction(transaction_id)
    if found is None:
        raise NotFound(f"transaction {transaction_id} has no receipt", code="receipt_not_found")
    config = current_app.config
    issuer = receipts.Issuer(
        config["OPERATOR_NAME"],
        config["OPERATOR_ADDRESS"],
        config["OPERATOR_TAX_ID"],
        config["RECEIPT_PREFIX"],
    )
    shown = receipts.view(found, issuer)
    if kind == "pdf":
        response = Response(receipts.pdf(shown), mimetype="application/pdf")
        response.headers["Content-Disposition"] = f'inline; filename="receipt-{shown.number}.pdf"'
        return response
    return Response(receipts.html(shown), mimetype="text/html")


def _id_or_404(item_id: int, what: str, model=None) -> None:
    """Ids beyond int32 name nothing (PostgreSQL would refuse the query)."""
    if not 0 < item_id <= INT32_MAX or (model is not None and db.session.get(model, item_id) is None):
        raise NotFound(f"no {what} {item_id}", code=f"{what}_not_found")
