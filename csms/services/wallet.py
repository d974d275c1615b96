"""Wallet movements. Every change of a balance and its ledger entry commit together, or not at all.

Each change of what a wallet can spend is announced (`BALANCE`, key: the owner's user id) with its
transaction, so the web nodes' Authorize decisions (csms.services.prepaid) follow it.
"""

from __future__ import annotations

import logging

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from csms.cluster import broadcast
from csms.extensions import db
from csms.models import ChargingSession, LedgerEntry, LedgerKind, SessionState, User, Wallet
from csms.services import events
from csms.services.errors import Conflict, InvalidInput, NotFound
from csms.services.money import format_minor

log = logging.getLogger(__name__)

BALANCE = "wallet"  # announcement: a wallet's available balance changed; key: its owner's user id


def announce_balance(user_id: int) -> None:
    """Every node re-reads this owner's standing once the current transaction commits."""
    broadcast.announce(BALANCE, str(user_id))


def top_up(wallet_id: int, amount_minor: int, *, reference: str, description: str | None = None) -> bool:
    """Credit a wallet once per payment `reference`; returns False if that reference was already credited.

    The ledger's unique `reference` decides, so a provider notification delivered twice (even to two
    workers at once) credits once. A reference is an idempotency key: used again for another amount
    or wallet it is a Conflict (`idempotency_key_reused`), never a silent no-op.
    """
    if amount_minor <= 0:
        raise InvalidInput("top-up amount must be positive", code="invalid_amount")
    wallet = db.session.get(Wallet, wallet_id)
    if wallet is None:
        raise InvalidInput(f"no wallet {wallet_id}", code="wallet_not_found")
    credited = _credited(reference)
    if credited is not None:
        return _replayed(credited, wallet_id, amount_minor)
    try:
        db.session.add(
            LedgerEntry(
                wallet_id=wallet_id,
                kind=LedgerKind.TOPUP,
                amount_minor=amount_minor,
                currency=wallet.currency,
                reference=reference,
                description=description,
            )
        )
        db.session.execute(  # flushes the entry first: a concurrent credit of `reference` fails here
            update(Wallet)
            .where(Wallet.id == wallet_id)
            .values(available_minor=Wallet.available_minor + amount_minor)
        )
        announce_balance(wallet.user_id)
        data = {
            "walletId": wallet_id,
            "userId": wallet.user_id,
            "amount": format_minor(amount_minor),
            "currency": wallet.currency,
            "reference": reference,
        }
        events.emit("billing.wallet.topped_up", data, key=reference)
        db.session.commit()
        log.info(
            "wallet %s of user %s topped up by %s %s (%s)",
            wallet_id,
            wallet.user_id,
            data["amount"],
            wallet.currency,
            reference,
            extra={"userId": wallet.user_id},
        )
    except IntegrityError:
        db.session.rollback()
        credited = _credited(reference)
        if credited is None:  # some other constraint: not a replay
            raise
        return _replayed(credited, wallet_id, amount_minor)
    return True


def hold(wallet: Wallet, amount_minor: int) -> bool:
    """Move `amount_minor` from available to held, only if available covers it: a conditional update,
    so concurrent holds can never overdraw a wallet. False when it does not cover it."""
    taken = db.session.execute(
        update(Wallet)
        .where(Wallet.id == wallet.id, Wallet.available_minor >= amount_minor)
        .values(
            available_minor=Wallet.available_minor - amount_minor,
            held_minor=Wallet.held_minor + amount_minor,
        )
    )
    if taken.rowcount == 1:
        announce_balance(wallet.user_id)
    return taken.rowcount == 1


def record_hold(wallet: Wallet, session_id: int, amount_minor: int, description: str) -> None:
    """The ledger entry of a session's hold (in the caller's transaction)."""
    db.session.add(
        LedgerEntry(
            wallet_id=wallet.id,
            kind=LedgerKind.HOLD,
            amount_minor=amount_minor,
            currency=wallet.currency,
            session_id=session_id,
            description=description[:255],
        )
    )


def _credited(reference: str) -> LedgerEntry | None:
    return db.session.scalar(select(LedgerEntry).where(LedgerEntry.reference == reference))


def _replayed(credited: LedgerEntry, wallet_id: int, amount_minor: int) -> bool:
    """The same credit asked again is answered as done; the same key for a different one is refused."""
    if (credited.kind, credited.wallet_id, credited.amount_minor) != (
        LedgerKind.TOPUP,
        wallet_id,
        amount_minor,
    ):
        raise Conflict(
            "this idempotency key was already used for a different top-up",
            code="idempotency_key_reused",
            details={
                "creditedAmount": format_minor(credited.amount_minor),
                "requestedAmount": format_minor(amount_minor),
            },
        )
    return False


def adjust(
    user_id: int, amount_minor: int, reason: str, *, operator_id: int | None, reference: str | None = None
) -> LedgerEntry:
    """An operator's credit (amount > 0) or debit (amount < 0) of a customer's wallet, with why; commits.

    A debit beyond what is available is refused (`insufficient_funds`): a wallet never goes negative.
    `reference`, when given, makes a retried request credit or debit once.
    """
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("an adjustment needs a reason", code="reason_required")
    if amount_minor == 0:
        raise InvalidInput("amount must not be zero", code="invalid_amount")
    wallet = _wallet_of(user_id)
    if reference is not None:
        done = _credited(reference)
        if done is not None:
            if (done.wallet_id, done.amount_minor, done.kind) != (
                wallet.id,
                abs(amount_minor),
                LedgerKind.CREDIT if amount_minor > 0 else LedgerKind.DEBIT,
            ):
                raise Conflict("this idempotency key was already used", code="idempotency_key_reused")
            return done
    moved = db.session.execute(
        update(Wallet)
        .where(Wallet.id == wallet.id, Wallet.available_minor + amount_minor >= 0)
        .values(available_minor=Wallet.available_minor + amount_minor)
    ).rowcount
    if not moved:
        db.session.rollback()
        raise Conflict(
            "the debit exceeds the available balance",
            code="insufficient_funds",
            details={"available": format_minor(wallet.available_minor)},
        )
    entry = LedgerEntry(
        wallet_id=wallet.id,
        kind=LedgerKind.CREDIT if amount_minor > 0 else LedgerKind.DEBIT,
        amount_minor=abs(amount_minor),
        currency=wallet.currency,
        created_by_id=operator_id,
        reference=reference,
        description=reason[:255],
    )
    db.session.add(entry)
    announce_balance(user_id)
    return _commit_once(entry, reference)


def refund_session(
    session_id: int,
    amount_minor: int | None,
    reason: str,
    *,
    operator_id: int | None,
    reference: str | None = None,
) -> LedgerEntry:
    """Give back what a completed session cost, in full (`amount_minor` None) or in part; commits.

    The sum of a session's refunds never exceeds what it captured: a conditional update of the
    session's `refunded_minor` decides, so two operators refunding at once cannot both overpay.
    `reference`, when given, makes a retried request refund once (answered with the first refund).
    """
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("a refund needs a reason", code="reason_required")
    done = _credited(reference) if reference is not None else None
    if done is not None:
        return done
    session = db.session.get(ChargingSession, session_id)
    if session is None:
        raise NotFound(f"no session {session_id}", code="session_not_found")
    if session.state != SessionState.COMPLETED:
        raise Conflict(f"session {session_id} is {session.state}, not billed yet", code="not_billed")
    amount = session.cost_minor - session.refunded_minor if amount_minor is None else amount_minor
    if amount <= 0:
        raise Conflict("nothing left to refund on this session", code="nothing_to_refund")
    taken = db.session.execute(
        update(ChargingSession)
        .where(
            ChargingSession.id == session_id,
            ChargingSession.refunded_minor + amount <= ChargingSession.cost_minor,
        )
        .values(refunded_minor=ChargingSession.refunded_minor + amount)
    ).rowcount
    if not taken:
        db.session.rollback()
        raise Conflict(
            "the refund exceeds what the session cost less earlier refunds",
            code="refund_exceeds_cost",
            details={"refundable": format_minor(session.cost_minor - session.refunded_minor)},
        )
    wallet = _wallet_of(session.user_id)
    db.session.execute(
        update(Wallet).where(Wallet.id == wallet.id).values(available_minor=Wallet.available_minor + amount)
    )
    entry = LedgerEntry(
        wallet_id=wallet.id,
        kind=LedgerKind.CREDIT,
        amount_minor=amount,
        currency=wallet.currency,
        transaction_id=session.transaction_id,
        created_by_id=operator_id,
        reference=reference,
        description=f"Refund of session {session_id}: {reason}"[:255],
    )
    db.session.add(entry)
    announce_balance(session.user_id)
    return _commit_once(entry, reference)


def _wallet_of(user_id: int) -> Wallet:
    wallet = db.session.scalar(select(Wallet).join(User).where(User.id == user_id))
    if wallet is None:
        raise NotFound(f"user {user_id} has no wallet", code="no_wallet")
    return wallet


def _commit_once(entry: LedgerEntry, reference: str | None) -> LedgerEntry:
    """Commit `entry`; a concurrent request with the same reference that landed first makes this one
    a replay, answered with that request's entry."""
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        landed = _credited(reference) if reference is not None else None
        if landed is None:
            raise
        return landed
    return entry
