"""Where top-up money comes from: payment providers as plugins, and the rules every provider's money
follows once it arrives.

`CSMS_PAYMENT_PROVIDER` names a shipped provider (`development`, `stripe`) or any class by its import
path (`package.module:Class`). A provider is built once with the application's configuration and
answers `start_top_up`: either the money is taken at once (`credited`, with the provider's
reference: the wallet is credited now) or the customer still has to pay (`pending`, with what the
app needs to finish, e.g. Stripe's client secret). A pending top-up is a `Payment` row; the
provider's confirmation later calls `succeeded`, `failed` or `refunded` here, each safe to repeat:
the ledger's unique reference credits a payment once however often it is confirmed.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import select, update

from csms.extensions import db
from csms.models import LedgerEntry, LedgerKind, Payment, PaymentState, Wallet
from csms.services import wallet as wallet_service
from csms.services.errors import Conflict, InvalidInput


@dataclass(frozen=True)
class TopUpRequest:
    user_id: int
    wallet_id: int
    amount_minor: int
    currency: str
    idempotency_key: str | None


@dataclass(frozen=True)
class TopUpStarted:
    """`credited`: the provider took the money (`reference` is its id). Else the customer finishes
    the payment with `client_secret` and the provider confirms it later."""

    reference: str
    credited: bool
    client_secret: str | None = None


class PaymentProvider(Protocol):
    name: str

    def __init__(self, config: dict[str, Any]) -> None: ...

    def start_top_up(self, request: TopUpRequest) -> TopUpStarted:
        """Ask the provider for the money; raise `csms.services.errors.ServiceError` to refuse."""


SHIPPED = {
    "development": "csms.services.payments.development:DevelopmentProvider",
    "stripe": "csms.services.payments.stripe:StripeProvider",
}


def load(name: str, config: dict[str, Any]) -> PaymentProvider:
    """The provider `name` (shipped, or `package.module:Class`), built with the configuration."""
    path = SHIPPED.get(name, name)
    module_name, _, class_name = path.partition(":")
    if not module_name or not class_name:
        raise Conflict(f"no payment provider {name!r} is available", code="payments_unavailable")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise Conflict(
            f"payment provider {name!r} cannot be loaded: {exc}", code="payments_unavailable"
        ) from None
    return cls(config)


def start_top_up(provider: PaymentProvider, request: TopUpRequest) -> tuple[TopUpStarted, Payment | None]:
    """Start a top-up; credit it now if the provider took the money, else record it pending. Commits."""
    if request.amount_minor <= 0:
        raise InvalidInput("top-up amount must be positive", code="invalid_amount")
    started = provider.start_top_up(request)
    if started.credited:
        wallet_service.top_up(
            request.wallet_id,
            request.amount_minor,
            reference=started.reference,
            description=f"Top-up via {provider.name}",
        )
        return started, None
    payment = _payment(provider.name, started.reference)
    if payment is None:
        payment = Payment(
            provider=provider.name,
            provider_reference=started.reference,
            user_id=request.user_id,
            wallet_id=request.wallet_id,
            amount_minor=request.amount_minor,
            currency=request.currency,
        )
        db.session.add(payment)
        db.session.commit()
    return started, payment


def succeeded(provider: str, reference: str, amount_minor: int) -> bool:
    """The provider took the money: credit the wallet once (True the first time). Commits."""
    payment = _payment(provider, reference)
    if payment is None:
        return False  # not a top-up of this CSMS (another integration shares the account)
    if amount_minor != payment.amount_minor:
        raise Conflict(
            f"{provider} confirmed {amount_minor}, the top-up asked {payment.amount_minor}",
            code="amount_mismatch",
        )
    db.session.execute(
        update(Payment)
        .where(Payment.id == payment.id, Payment.state.in_([PaymentState.PENDING, PaymentState.FAILED]))
        .values(state=PaymentState.SUCCEEDED, failure_reason=None)
    )
    return wallet_service.top_up(
        payment.wallet_id,
        payment.amount_minor,
        reference=_credit_reference(provider, reference),
        description=f"Top-up via {provider} ({reference})",
    )


def failed(provider: str, reference: str, reason: str) -> bool:
    """The payment failed: a pending top-up is marked so (the customer may retry). Commits."""
    moved = db.session.execute(
        update(Payment)
        .where(
            Payment.provider == provider,
            Payment.provider_reference == reference,
            Payment.state == PaymentState.PENDING,
        )
        .values(state=PaymentState.FAILED, failure_reason=reason[:255])
    ).rowcount
    db.session.commit()
    return bool(moved)


def refunded(provider: str, reference: str, refunded_total_minor: int) -> int:
    """The provider gave back `refunded_total_minor` of the payment so far: take the part not yet
    taken back from the wallet, once; returns it. What the wallet no longer holds becomes owed (an
    open balance): a wallet never goes negative. Commits."""
    payment = _payment(provider, reference, lock=True)
    if payment is None or payment.state not in (PaymentState.SUCCEEDED, PaymentState.REFUNDED):
        db.session.rollback()
        return 0
    total = min(refunded_total_minor, payment.amount_minor)
    delta = total - payment.refunded_minor
    if delta <= 0:
        db.session.rollback()
        return 0
    payment.refunded_minor = total
    payment.state = PaymentState.REFUNDED
    wallet = db.session.get(Wallet, payment.wallet_id, with_for_update=True)
    taken = min(delta, wallet.available_minor)
    wallet.available_minor -= taken
    wallet.owed_minor += delta - taken
    db.session.add(
        LedgerEntry(
            wallet_id=wallet.id,
            kind=LedgerKind.REVERSAL,
            amount_minor=delta,
            currency=payment.currency,
            reference=f"{_credit_reference(provider, reference)}:refunded:{total}",
            description=f"Top-up {reference} refunded by {provider}"
            + (f"; {delta - taken} owed" if delta > taken else ""),
        )
    )
    wallet_service.announce_balance(wallet.user_id)
    db.session.commit()
    return delta


def _credit_reference(provider: str, reference: str) -> str:
    return f"{provider}:{reference}"


def _payment(provider: str, reference: str, *, lock: bool = False) -> Payment | None:
    query = select(Payment).where(Payment.provider == provider, Payment.provider_reference == reference)
    return db.session.scalar(query.with_for_update() if lock else query)
