"""Money that comes from outside (payments at a provider) and the receipts handed to customers."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from csms.models.base import Base, BigId, utcnow


class PaymentState(StrEnum):
    """pending → succeeded | failed; succeeded → refunded (in part or in full)."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REFUNDED = "refunded"


class Payment(Base):
    """A top-up taken by a payment provider that confirms it later (a Stripe PaymentIntent).

    The wallet is credited when the provider says it succeeded, once: the ledger's unique reference
    is the provider's id. `refunded_minor` is what the provider has given back so far.
    """

    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint(
            "state IN ('pending', 'succeeded', 'failed', 'refunded')",
            name="state",
        ),
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        CheckConstraint("refunded_minor >= 0 AND refunded_minor <= amount_minor", name="refunded_range"),
        UniqueConstraint("provider", "provider_reference"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    provider_reference: Mapped[str] = mapped_column(String(128))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    wallet_id: Mapped[int] = mapped_column(ForeignKey("wallets.id", ondelete="RESTRICT"))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    state: Mapped[str] = mapped_column(String(16), default=PaymentState.PENDING)
    refunded_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    failure_reason: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ReceiptCounter(Base):
    """The last receipt number of a series. Raised in the transaction that issues the receipt, so a
    rolled-back settlement takes its number back with it: the numbers have no gaps."""

    __tablename__ = "receipt_counters"

    series: Mapped[str] = mapped_column(String(32), primary_key=True)
    last_number: Mapped[int] = mapped_column(Integer, default=0)


class Receipt(Base):
    """The receipt of one billed transaction (an app session's, or one billed to a tag's owner)."""

    __tablename__ = "receipts"
    __table_args__ = (UniqueConstraint("series", "number"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    series: Mapped[str] = mapped_column(String(32))
    number: Mapped[int] = mapped_column(Integer)
    transaction_id: Mapped[int] = mapped_column(
        ForeignKey("transactions.id", ondelete="RESTRICT"), unique=True
    )
    session_id: Mapped[int | None] = mapped_column(ForeignKey("charging_sessions.id", ondelete="RESTRICT"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    total_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
