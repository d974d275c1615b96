"""Wallets and their append-only ledger. Amounts are integers in minor units (cents), never floats."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from csms.models.base import Base, BigId, utcnow


class LedgerKind(StrEnum):
    TOPUP = "topup"
    HOLD = "hold"
    CAPTURE = "capture"
    REFUND = "refund"
    CREDIT = "credit"  # an operator's adjustment or refund in the customer's favour
    DEBIT = "debit"  # an operator's adjustment against the customer
    CHARGE = "charge"  # a transaction outside an app session, paid from the wallet
    OPEN_BALANCE = "open_balance"  # what the wallet could not pay, owed (no money moved)
    REVERSAL = "reversal"  # a top-up the payment provider refunded


class Wallet(Base):
    """`available_minor` can be spent; `held_minor` is reserved for sessions in progress.

    The CHECK constraints make a negative wallet impossible even if a service had a bug.
    """

    __tablename__ = "wallets"
    __table_args__ = (
        CheckConstraint("available_minor >= 0", name="available_not_negative"),
        CheckConstraint("held_minor >= 0", name="held_not_negative"),
        CheckConstraint("owed_minor >= 0", name="owed_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    currency: Mapped[str] = mapped_column(String(3))
    available_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    held_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    # Open balance: charging the wallet could not pay for, to be invoiced (csms.services.billing).
    owed_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class LedgerEntry(Base):
    """One movement of money. Never updated or deleted.

    `(session_id, kind)` is unique, so a hold, capture or refund happens once per charging session
    however often the billing message is redelivered. `reference` is unique for payment-provider ids,
    so a top-up notification replayed by the provider credits once, and for the CSMS's own keys
    (`transaction:<id>:charge`), so a transaction is billed once. `created_by_id` is the operator who
    made an adjustment; `description` says why.
    """

    __tablename__ = "ledger_entries"
    __table_args__ = (
        CheckConstraint(f"kind IN ({', '.join(repr(k.value) for k in LedgerKind)})", name="kind"),
        CheckConstraint("amount_minor >= 0", name="amount_not_negative"),
        UniqueConstraint("session_id", "kind"),
        UniqueConstraint("reservation_id", "kind"),  # a reservation's fee: held, then settled, once
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    wallet_id: Mapped[int] = mapped_column(ForeignKey("wallets.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    session_id: Mapped[int | None] = mapped_column(ForeignKey("charging_sessions.id", ondelete="RESTRICT"))
    reservation_id: Mapped[int | None] = mapped_column(ForeignKey("reservations.id", ondelete="RESTRICT"))
    transaction_id: Mapped[int | None] = mapped_column(
        ForeignKey("transactions.id", ondelete="RESTRICT"), index=True
    )
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    reference: Mapped[str | None] = mapped_column(String(128), unique=True)
    description: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
