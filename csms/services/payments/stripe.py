"""Stripe: a top-up is a PaymentIntent the customer's app confirms with its client secret; Stripe's
webhook (`POST /api/payments/stripe/webhook`) then tells the CSMS what became of it.

Events are authenticated by their `Stripe-Signature` header (HMAC with CSMS_STRIPE_WEBHOOK_SECRET,
checked by the SDK, which also refuses stale timestamps): anything else changes nothing. Stripe
delivers an event at least once and in any order; each handler here is safe to repeat.
"""

from __future__ import annotations

import logging
from typing import Any

import stripe

from csms.services import payments
from csms.services.errors import BadGateway, Conflict, ServiceError

log = logging.getLogger(__name__)

NAME = "stripe"
SIGNATURE_TOLERANCE_SECONDS = 300  # Stripe's default: an older signed event is a replay


class StripeProvider:
    name = NAME

    def __init__(self, config: dict[str, Any]) -> None:
        if not config.get("STRIPE_API_KEY"):
            raise Conflict("CSMS_STRIPE_API_KEY is not set", code="payments_unavailable")
        base = config.get("STRIPE_API_BASE")
        self.client = stripe.StripeClient(
            config["STRIPE_API_KEY"],
            base_addresses={"api": base} if base else None,
            max_network_retries=2,
        )

    def start_top_up(self, request: payments.TopUpRequest) -> payments.TopUpStarted:
        params = {
            "amount": request.amount_minor,
            "currency": request.currency.lower(),
            "automatic_payment_methods": {"enabled": True},
            "metadata": {"csms_user_id": str(request.user_id), "csms_wallet_id": str(request.wallet_id)},
            "description": "Wallet top-up",
        }
        options = {"idempotency_key": f"topup-{request.user_id}-{request.idempotency_key}"}
        try:
            intent = self.client.v1.payment_intents.create(
                params=params, options=options if request.idempotency_key else None
            )
        except stripe.StripeError as exc:
            raise BadGateway(
                f"Stripe refused the top-up: {exc.user_message or exc}", code="payment_provider_error"
            ) from None
        return payments.TopUpStarted(reference=intent.id, credited=False, client_secret=intent.client_secret)


def verified_event(payload: bytes, signature: str | None, secret: str) -> dict:
    """The event, if Stripe signed it with `secret` within the tolerance; else a 400 error."""
    try:
        event = stripe.Webhook.construct_event(
            payload, signature, secret, tolerance=SIGNATURE_TOLERANCE_SECONDS
        )
    except stripe.SignatureVerificationError:
        raise ServiceError("the Stripe-Signature does not verify", code="invalid_signature") from None
    except ValueError:
        raise ServiceError("the body is not a Stripe event", code="invalid_event") from None
    return event.to_dict()


def handle(event: dict) -> str:
    """Apply a verified event; returns what it did (for the answer and the log)."""
    try:
        return _apply(event)
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ServiceError("the event lacks what its type needs", code="invalid_event") from None


def _apply(event: dict) -> str:
    kind = event.get("type")
    obj = (event.get("data") or {}).get("object") or {}
    if kind == "payment_intent.succeeded":
        credited = payments.succeeded(NAME, obj["id"], int(obj.get("amount_received") or obj["amount"]))
        return "credited" if credited else "already credited"
    if kind == "payment_intent.payment_failed":
        error = obj.get("last_payment_error") or {}
        payments.failed(NAME, obj["id"], error.get("message") or "the payment failed")
        return "marked failed"
    if kind == "charge.refunded" and obj.get("payment_intent"):
        taken = payments.refunded(NAME, obj["payment_intent"], int(obj.get("amount_refunded") or 0))
        return f"refunded {taken}"
    log.info("Stripe event %s (%s) ignored", event.get("id"), kind)
    return "ignored"
