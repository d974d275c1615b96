"""Wallet movements. Every change of a balance and its ledger entry commit together, or not at all."""

from __future__ import annotations

import logging

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from csms.extensions import db
from csms.models import LedgerEntry, LedgerKind, Wallet
from csms.services import events
from csms.services.errors import Conflict, InvalidInput
from csms.services.money import format_minor

log = logging.getLogger(__name__)


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
