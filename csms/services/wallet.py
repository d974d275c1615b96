"""Wallet movements. Every change of a balance and its ledger entry commit together, or not at all."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from csms.extensions import db
from csms.models import LedgerEntry, LedgerKind, Wallet
from csms.services.errors import InvalidInput


def top_up(wallet_id: int, amount_minor: int, *, reference: str, description: str | None = None) -> bool:
    """Credit a wallet once per payment `reference`; returns False if that reference was already credited.

    The ledger's unique `reference` decides, so a provider notification delivered twice (even to two
    workers at once) credits once.
    """
    if amount_minor <= 0:
        raise InvalidInput("top-up amount must be positive", code="invalid_amount")
    wallet = db.session.get(Wallet, wallet_id)
    if wallet is None:
        raise InvalidInput(f"no wallet {wallet_id}", code="wallet_not_found")
    if db.session.scalar(select(LedgerEntry.id).where(LedgerEntry.reference == reference)):
        return False
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
    db.session.execute(
        update(Wallet)
        .where(Wallet.id == wallet_id)
        .values(available_minor=Wallet.available_minor + amount_minor)
    )
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return False
    return True
