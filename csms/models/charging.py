"""Charging: a customer's session (intent and money), the OCPP transaction, and its meter samples."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Numeric,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from csms.models.base import Base, BigId, JsonDoc, utcnow

if TYPE_CHECKING:
    from csms.models.network import ChargePoint


class SessionState(StrEnum):
    """requested → accepted → charging → stopping → completed; or rejected / failed on the way."""

    REQUESTED = "requested"
    ACCEPTED = "accepted"
    CHARGING = "charging"
    STOPPING = "stopping"
    COMPLETED = "completed"
    REJECTED = "rejected"
    FAILED = "failed"


ACTIVE_SESSION_STATES = (
    SessionState.REQUESTED,
    SessionState.ACCEPTED,
    SessionState.CHARGING,
    SessionState.STOPPING,
)
_ACTIVE_SQL = "state IN ('requested', 'accepted', 'charging', 'stopping')"


class TransactionState(StrEnum):
    STARTED = "started"
    STOPPED = "stopped"


_OPEN_SQL = "state = 'started'"


class Transaction(Base):
    """An OCPP transaction. Its primary key *is* the OCPP transactionId (int32).

    The id comes from the database's own counter (a PostgreSQL sequence, SQLite AUTOINCREMENT), so it
    is unique across restarts and across web nodes. A StartTransaction resent by the charger hits the
    unique start key and gets the id it was given the first time.
    """

    __tablename__ = "transactions"
    __table_args__ = (
        UniqueConstraint(
            "charge_point_id", "connector_id", "id_tag", "started_at", name="uq_transactions_start"
        ),
        CheckConstraint("state IN ('started', 'stopped')", name="state"),
        Index("ix_transactions_cp_started", "charge_point_id", "started_at"),
        # The open transactions of a connector, found without reading its history: a new start
        # closes them (csms.services.unplanned). Only open rows are indexed, so it stays small.
        Index(
            "ix_transactions_open",
            "charge_point_id",
            "connector_id",
            sqlite_where=text(_OPEN_SQL),
            postgresql_where=text(_OPEN_SQL),
        ),
        # The open transactions of an idTag, for ConcurrentTx (csms.services.authorization).
        Index(
            "ix_transactions_open_id_tag",
            "id_tag",
            sqlite_where=text(_OPEN_SQL),
            postgresql_where=text(_OPEN_SQL),
        ),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    charge_point_id: Mapped[int] = mapped_column(ForeignKey("charge_points.id", ondelete="RESTRICT"))
    connector_id: Mapped[int]
    id_tag: Mapped[str] = mapped_column(String(20))
    reservation_id: Mapped[int | None]
    state: Mapped[str] = mapped_column(String(16), default=TransactionState.STARTED)
    meter_start_wh: Mapped[int] = mapped_column(BigInteger)
    # Highest cumulative register reading seen so far (Energy.Active.Import.Register), in Wh.
    meter_last_wh: Mapped[int | None] = mapped_column(BigInteger)
    meter_last_at: Mapped[datetime | None]  # the charger's time of that reading
    meter_stop_wh: Mapped[int | None] = mapped_column(BigInteger)
    energy_wh: Mapped[int | None] = mapped_column(BigInteger)
    started_at: Mapped[datetime]
    stopped_at: Mapped[datetime | None]
    stop_reason: Mapped[str | None] = mapped_column(String(32))
    stop_id_tag: Mapped[str | None] = mapped_column(String(20))
    # The tariff as it was when the transaction started (csms.services.bills): a later edit of the
    # tariff never changes this transaction's price.
    tariff: Mapped[dict | None] = mapped_column(JsonDoc)
    # Its price once stopped: minor units and the bill's lines; `billing` says who paid
    # (session | wallet | open_balance | nobody) and `billed_user_id` whom.
    cost_minor: Mapped[int | None] = mapped_column(BigInteger)
    breakdown: Mapped[dict | None] = mapped_column(JsonDoc)
    billing: Mapped[str | None] = mapped_column(String(16))
    billed_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    session: Mapped[ChargingSession | None] = relationship(back_populates="transaction")


class ChargingSession(Base):
    """What a customer asked for through the app, and what it costs them.

    Only one active session per connector: a partial unique index lets the database refuse a second.
    """

    __tablename__ = "charging_sessions"
    __table_args__ = (
        CheckConstraint(
            "state IN ('requested', 'accepted', 'charging', 'stopping', 'completed', 'rejected', 'failed')",
            name="state",
        ),
        CheckConstraint("prepaid_minor > 0", name="prepaid_positive"),
        Index(
            "uq_charging_sessions_active_connector",
            "charge_point_id",
            "connector_id",
            unique=True,
            sqlite_where=text(_ACTIVE_SQL),
            postgresql_where=text(_ACTIVE_SQL),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    charge_point_id: Mapped[int] = mapped_column(ForeignKey("charge_points.id", ondelete="RESTRICT"))
    connector_id: Mapped[int]
    id_tag: Mapped[str] = mapped_column(String(20))
    tariff_id: Mapped[int | None] = mapped_column(ForeignKey("tariffs.id", ondelete="SET NULL"))
    transaction_id: Mapped[int | None] = mapped_column(
        ForeignKey("transactions.id", ondelete="SET NULL"), unique=True
    )
    state: Mapped[str] = mapped_column(String(16), default=SessionState.REQUESTED)
    currency: Mapped[str] = mapped_column(String(3))
    prepaid_minor: Mapped[int] = mapped_column(BigInteger)
    energy_wh: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_minor: Mapped[int] = mapped_column(BigInteger, default=0)  # running, then final
    # Priced beyond the hold and not captured (the charger overran the budget), never dropped silently.
    unbilled_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    unbilled_wh: Mapped[int] = mapped_column(BigInteger, default=0)
    refunded_minor: Mapped[int] = mapped_column(BigInteger, default=0)  # by operators, after settling
    charger_response: Mapped[dict | None] = mapped_column(JsonDoc)
    failure_reason: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    stopped_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    transaction: Mapped[Transaction | None] = relationship(back_populates="session")
    charge_point: Mapped[ChargePoint] = relationship()


class MeterSample(Base):
    """One sampled value of a MeterValues (or StopTransaction transactionData) message, normalised.

    Energy is stored in Wh and power in W, whatever unit the charger used; `raw_value` and `raw_unit`
    keep what it sent. The unique key makes a redelivered message store nothing new. Optional
    dimensions are '' rather than NULL, because NULLs would never collide in that key.
    """

    __tablename__ = "meter_samples"
    __table_args__ = (
        UniqueConstraint(
            "charge_point_id",
            "connector_id",
            "sampled_at",
            "measurand",
            "phase",
            "location",
            "context",
            name="uq_meter_samples_key",  # the conventional name would pass PostgreSQL's 63 characters
        ),
        Index("ix_meter_samples_transaction", "transaction_id", "sampled_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    charge_point_id: Mapped[int] = mapped_column(ForeignKey("charge_points.id", ondelete="CASCADE"))
    connector_id: Mapped[int]
    transaction_id: Mapped[int | None] = mapped_column(ForeignKey("transactions.id", ondelete="SET NULL"))
    sampled_at: Mapped[datetime]
    measurand: Mapped[str] = mapped_column(String(64))
    phase: Mapped[str] = mapped_column(String(8), default="")
    location: Mapped[str] = mapped_column(String(8), default="")
    context: Mapped[str] = mapped_column(String(32), default="")
    unit: Mapped[str] = mapped_column(String(16))
    value: Mapped[Decimal] = mapped_column(Numeric(20, 4))
    raw_value: Mapped[str] = mapped_column(String(64))
    raw_unit: Mapped[str | None] = mapped_column(String(16))
