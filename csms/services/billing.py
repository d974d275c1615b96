"""What a session costs, and settling it against the customer's hold.

The cost formula is pure: energy (kWh) * energyPrice + hours * timePrice + sessionFee, then tax, all
in Decimal, rounded half-up to the cent once, at the end (SPEC "Tariffs and money").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import select, update

from csms.extensions import db
from csms.models import ChargingSession, LedgerEntry, LedgerKind, SessionState, Tariff, Transaction, Wallet
from csms.services import events
from csms.services.money import CENT, format_minor
from csms.services.sql import insert_ignoring_conflicts


@dataclass(frozen=True)
class Prices:
    energy_price: Decimal  # per kWh
    time_price: Decimal  # per hour
    session_fee: Decimal
    tax_percent: Decimal

    @classmethod
    def of(cls, tariff: Tariff | None) -> Prices:
        if tariff is None:
            return cls(Decimal(0), Decimal(0), Decimal(0), Decimal(0))
        return cls(
            tariff.energy_price, tariff.time_price or Decimal(0), tariff.session_fee, tariff.tax_percent
        )


def cost(prices: Prices, energy_wh: int, duration: timedelta) -> Decimal:
    """The session's price in major units (e.g. euros), rounded half-up to the cent."""
    kwh = Decimal(max(energy_wh, 0)) / 1000
    hours = Decimal(max(duration.total_seconds(), 0)) / 3600
    net = kwh * prices.energy_price + hours * prices.time_price + prices.session_fee
    gross = net * (1 + prices.tax_percent / 100)
    return gross.quantize(CENT, rounding=ROUND_HALF_UP)


def to_minor(amount: Decimal) -> int:
    return int((amount / CENT).to_integral_value(rounding=ROUND_HALF_UP))


def session_tariff(session: ChargingSession) -> Tariff | None:
    if session.tariff_id is not None:
        return db.session.get(Tariff, session.tariff_id)
    return db.session.scalar(select(Tariff).where(Tariff.is_default.is_(True)))


@dataclass(frozen=True)
class Settlement:
    session_id: int
    user_id: int
    cost_minor: int
    captured_minor: int
    refunded_minor: int
    energy_wh: int
    newly_settled: bool


def settle(session_id: int) -> Settlement | None:
    """Capture the session's cost from its hold and refund the rest, exactly once, and commit."""
    settlement = settle_in_transaction(session_id)
    db.session.commit()
    return settlement


def settle_in_transaction(session_id: int) -> Settlement | None:
    """`settle` inside the caller's database transaction (a worker batch that must free the
    connector's session slot before it opens another session there).

    The capture ledger entry is the lock: it is unique per session, so of two workers settling the
    same session only the one whose INSERT lands moves money; the other finds it done. The capture
    never exceeds the hold, so the wallet can never go negative.
    """
    session = db.session.get(ChargingSession, session_id, with_for_update=True)
    if session is None or session.transaction_id is None:
        return None
    transaction = db.session.get(Transaction, session.transaction_id)
    if transaction is None or transaction.state != "stopped":
        return None
    energy = transaction.energy_wh or 0
    duration = (transaction.stopped_at or transaction.started_at) - transaction.started_at
    price = to_minor(cost(Prices.of(session_tariff(session)), energy, duration))
    captured = min(price, session.prepaid_minor)
    refunded = session.prepaid_minor - captured
    wallet_id = db.session.scalar(select(Wallet.id).where(Wallet.user_id == session.user_id))
    inserted = insert_ignoring_conflicts(
        db.session,
        LedgerEntry,
        [
            {
                "wallet_id": wallet_id,
                "kind": LedgerKind.CAPTURE,
                "amount_minor": captured,
                "currency": session.currency,
                "session_id": session.id,
                "description": f"Charging session {session.id}: {energy} Wh",
            },
        ],
        ["session_id", "kind"],
    )
    if inserted:
        db.session.add(
            LedgerEntry(
                wallet_id=wallet_id,
                kind=LedgerKind.REFUND,
                amount_minor=refunded,
                currency=session.currency,
                session_id=session.id,
                description=f"Unused prepaid amount of session {session.id}",
            )
        )
        db.session.execute(
            update(Wallet)
            .where(Wallet.id == wallet_id)
            .values(
                held_minor=Wallet.held_minor - session.prepaid_minor,
                available_minor=Wallet.available_minor + refunded,
            )
        )
        session.state = SessionState.COMPLETED
        session.energy_wh = energy
        session.cost_minor = captured
        session.stopped_at = transaction.stopped_at
        events.emit(
            "billing.session.settled",
            {
                "sessionId": session.id,
                "userId": session.user_id,
                "transactionId": transaction.id,
                "energyWh": energy,
                "currency": session.currency,
                "price": format_minor(price),
                "captured": format_minor(captured),
                "refunded": format_minor(refunded),
            },
            key=str(session.id),
        )
    return Settlement(session.id, session.user_id, price, captured, refunded, energy, bool(inserted))
