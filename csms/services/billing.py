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
from csms.models import (
    AccountPolicy,
    ChargingSession,
    IdTag,
    LedgerEntry,
    LedgerKind,
    SessionState,
    Tariff,
    Transaction,
    User,
    Wallet,
)
from csms.services import bills, events, receipts
from csms.services import wallet as wallet_service
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


@dataclass(frozen=True)
class Settlement:
    session_id: int
    user_id: int
    cost_minor: int
    captured_minor: int
    refunded_minor: int
    energy_wh: int
    newly_settled: bool
    charge_point_pk: int
    unbilled_minor: int = 0


def settle_in_transaction(session_id: int) -> Settlement | None:
    """Capture the session's cost from its hold and refund the rest, exactly once, in the caller's
    database transaction (the billing actor's, or a worker batch that must free the connector's
    session slot before it opens another session there).

    The capture ledger entry is the lock: it is unique per session, so of two workers settling the
    same session only the one whose INSERT lands moves money; the other finds it done. The capture
    never exceeds the hold, so the wallet can never go negative. A price beyond the hold (the
    charger delivered past the budget before it stopped) is never dropped silently: a postpaid
    owner owes it (open balance), otherwise it is recorded on the session as unbilled.
    """
    session = db.session.get(ChargingSession, session_id, with_for_update=True)
    if session is None or session.transaction_id is None:
        return None
    transaction = db.session.get(Transaction, session.transaction_id)
    if transaction is None or transaction.state != "stopped":
        return None
    energy = transaction.energy_wh or 0
    bill = bills.price(transaction)
    price = bill.total
    captured = min(price, session.prepaid_minor)
    refunded = session.prepaid_minor - captured
    overrun = price - captured
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
                "transaction_id": transaction.id,
                "description": f"Charging session {session.id}: {energy} Wh",
            },
        ],
        ["session_id", "kind"],
    )
    unbilled = 0
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
        billed = "session"
        if overrun and _policy(session.user_id) == AccountPolicy.POSTPAID:
            _owe(wallet_id, session.user_id, overrun, session.currency, transaction, f"session:{session.id}")
            billed = "open_balance"
        elif overrun:
            unbilled = overrun
            session.unbilled_minor = overrun
            session.unbilled_wh = energy * overrun // price
        session.state = SessionState.COMPLETED
        session.energy_wh = energy
        session.cost_minor = captured
        session.stopped_at = transaction.stopped_at
        transaction.billing = billed
        transaction.billed_user_id = session.user_id
        receipts.issue(transaction.id, session.id, session.user_id, price - unbilled, session.currency)
        wallet_service.announce_balance(session.user_id)
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
    return Settlement(
        session.id,
        session.user_id,
        price,
        captured,
        refunded,
        energy,
        bool(inserted),
        transaction.charge_point_id,
        session.unbilled_minor,
    )


@dataclass(frozen=True)
class TransactionBill:
    transaction_id: int
    user_id: int | None
    billing: str
    cost_minor: int


def bill_transaction(transaction_id: int) -> TransactionBill | None:
    """Bill a stopped transaction no app session pays for, once, in the caller's database transaction.

    The tag's owner pays from the wallet when it covers the price, else owes it as an open balance
    (a prepaid owner too: the energy was delivered; Authorize refuses their next start). A tag
    nobody owns: priced and reported, billed to no one. None when there is nothing to bill (still
    running, billed already, or a session's to settle).
    """
    transaction = db.session.get(Transaction, transaction_id, with_for_update=True)
    if transaction is None:
        return None
    return bill_locked([transaction]).get(transaction_id)


def bill_locked(transactions: list[Transaction]) -> dict[int, TransactionBill]:
    """`bill_transaction` for transactions the caller locked (a batch of Stops, in id order), by
    transaction id: what decides their bills (app sessions, tag owners, wallets) is read once for
    them all, the wallets locked in one statement in id order; a few statements a batch instead of
    four for each transaction, in the burst of Stops at the end of a busy hour."""
    due = [t for t in transactions if t.state == "stopped" and t.billing is None]
    if due:
        in_sessions = set(
            db.session.scalars(
                select(ChargingSession.transaction_id).where(
                    ChargingSession.transaction_id.in_([t.id for t in due])
                )
            )
        )
        due = [t for t in due if t.id not in in_sessions]
    if not due:
        return {}
    owners = dict(
        db.session.execute(
            select(IdTag.id_tag, IdTag.user_id).where(IdTag.id_tag.in_(sorted({t.id_tag for t in due})))
        ).all()
    )
    users = sorted({owners[t.id_tag] for t in due if owners.get(t.id_tag) is not None})
    wallets = {}
    if users:
        query = select(Wallet).where(Wallet.user_id.in_(users)).order_by(Wallet.id).with_for_update()
        wallets = {wallet.user_id: wallet for wallet in db.session.scalars(query)}
    billed = {}
    for transaction in sorted(due, key=lambda t: t.id):
        user_id = owners.get(transaction.id_tag)
        billed[transaction.id] = _bill(transaction, user_id, wallets.get(user_id))
    return billed


def _bill(transaction: Transaction, user_id: int | None, wallet: Wallet | None) -> TransactionBill:
    bill = bills.price(transaction)
    if wallet is None:
        transaction.billing = "nobody"
        return TransactionBill(transaction.id, None, "nobody", bill.total)
    label = f"Transaction {transaction.id}: {transaction.energy_wh or 0} Wh"
    charged = db.session.execute(
        update(Wallet)
        .where(Wallet.id == wallet.id, Wallet.available_minor >= bill.total)
        .values(available_minor=Wallet.available_minor - bill.total)
    ).rowcount
    if charged:
        db.session.add(
            LedgerEntry(
                wallet_id=wallet.id,
                kind=LedgerKind.CHARGE,
                amount_minor=bill.total,
                currency=wallet.currency,
                transaction_id=transaction.id,
                reference=f"transaction:{transaction.id}:charge",
                description=label,
            )
        )
        transaction.billing = "wallet"
    else:
        _owe(wallet.id, user_id, bill.total, wallet.currency, transaction, f"transaction:{transaction.id}")
        transaction.billing = "open_balance"
    transaction.billed_user_id = user_id
    receipts.issue(transaction.id, None, user_id, bill.total, wallet.currency)
    wallet_service.announce_balance(user_id)
    return TransactionBill(transaction.id, user_id, transaction.billing, bill.total)


def _policy(user_id: int) -> str:
    return db.session.scalar(select(User.account_policy).where(User.id == user_id))


def _owe(
    wallet_id: int, user_id: int, amount: int, currency: str, transaction: Transaction, key: str
) -> None:
    """Record `amount` the wallet could not pay as owed (an open balance to invoice)."""
    db.session.add(
        LedgerEntry(
            wallet_id=wallet_id,
            kind=LedgerKind.OPEN_BALANCE,
            amount_minor=amount,
            currency=currency,
            transaction_id=transaction.id,
            reference=f"{key}:open-balance",
            description=f"Transaction {transaction.id}: not covered by the wallet, owed",
        )
    )
    db.session.execute(
        update(Wallet).where(Wallet.id == wallet_id).values(owed_minor=Wallet.owed_minor + amount)
    )
