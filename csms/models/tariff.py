"""Prices. Per-unit prices keep four decimals; the cost is rounded once, at the end of a session."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, Numeric, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from csms.models.base import Base, utcnow


class Tariff(Base):
    __tablename__ = "tariffs"
    __table_args__ = (
        CheckConstraint("energy_price >= 0", name="energy_price_not_negative"),
        CheckConstraint("time_price IS NULL OR time_price >= 0", name="time_price_not_negative"),
        CheckConstraint("session_fee >= 0", name="session_fee_not_negative"),
        CheckConstraint("reservation_fee >= 0", name="reservation_fee_not_negative"),
        CheckConstraint("tax_percent >= 0 AND tax_percent <= 100", name="tax_percent_range"),
        # At most one default tariff, enforced by the database: `is_default` is TRUE or NULL, and
        # NULLs never collide in a unique constraint on SQLite or PostgreSQL.
        UniqueConstraint("is_default"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    currency: Mapped[str] = mapped_column(String(3))
    energy_price: Mapped[Decimal]  # per kWh
    time_price: Mapped[Decimal | None]  # per hour of charging
    session_fee: Mapped[Decimal] = mapped_column(default=Decimal("0"))
    reservation_fee: Mapped[Decimal] = mapped_column(default=Decimal("0"))  # csms.services.reservations
    tax_percent: Mapped[Decimal] = mapped_column(Numeric(5, 2), default=Decimal("0"))
    is_default: Mapped[bool | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
