"""Reservations (OCPP 1.6 §5.13 ReserveNow, §5.1 CancelReservation): a connector, or the whole charger
(connector 0), kept for one idTag (or its group) until an expiry.

The record's `id` is the `reservationId` sent to the charger, so every answer and every
StartTransaction that names a reservation finds its record without a mapping table.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from csms.models.base import Base, utcnow
from csms.models.network import ChargePoint


class ReservationState(StrEnum):
    REQUESTED = "requested"  # stored, ReserveNow on its way
    ACCEPTED = "accepted"  # the charger answered Accepted: the connector is held
    REJECTED = "rejected"  # Occupied, Faulted, Unavailable, Rejected, or never reached the charger
    USED = "used"  # a StartTransaction took it
    EXPIRED = "expired"  # its expiry passed unused
    CANCELLED = "cancelled"  # withdrawn (CancelReservation), by its customer or an operator


# The state machine (OCPP 1.6 §5.13): every allowed change; anything else is refused. A
# StartTransaction may overtake the ReserveNow answer it follows (both race to the workers): a
# requested reservation can be used directly.
TRANSITIONS: dict[ReservationState, frozenset[ReservationState]] = {
    ReservationState.REQUESTED: frozenset(
        {
            ReservationState.ACCEPTED,
            ReservationState.REJECTED,
            ReservationState.USED,
            ReservationState.EXPIRED,
            ReservationState.CANCELLED,
        }
    ),
    ReservationState.ACCEPTED: frozenset(
        {ReservationState.USED, ReservationState.EXPIRED, ReservationState.CANCELLED}
    ),
    ReservationState.REJECTED: frozenset(),
    ReservationState.USED: frozenset(),
    ReservationState.EXPIRED: frozenset(),
    ReservationState.CANCELLED: frozenset(),
}

OPEN_STATES = (ReservationState.REQUESTED, ReservationState.ACCEPTED)
_OPEN_SQL = "state IN ('requested', 'accepted')"


class Reservation(Base):
    __tablename__ = "reservations"
    __table_args__ = (
        CheckConstraint(
            "state IN ('requested', 'accepted', 'rejected', 'used', 'expired', 'cancelled')", name="state"
        ),
        CheckConstraint("connector_id >= 0", name="connector_id_not_negative"),
        CheckConstraint("fee_minor >= 0", name="fee_not_negative"),
        # One open reservation per connector: the database refuses a second, whoever races.
        Index(
            "uq_reservations_open_connector",
            "charge_point_id",
            "connector_id",
            unique=True,
            sqlite_where=text(_OPEN_SQL),
            postgresql_where=text(_OPEN_SQL),
        ),
        Index("ix_reservations_state_expires", "state", "expires_at"),  # the expiry sweep
    )

    id: Mapped[int] = mapped_column(primary_key=True)  # the OCPP reservationId
    charge_point_id: Mapped[int] = mapped_column(ForeignKey("charge_points.id", ondelete="CASCADE"))
    connector_id: Mapped[int]
    id_tag: Mapped[str] = mapped_column(String(20))
    parent_id_tag: Mapped[str | None] = mapped_column(String(20))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    requested_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    state: Mapped[str] = mapped_column(String(10), default=ReservationState.REQUESTED.value)
    expires_at: Mapped[datetime]
    charger_status: Mapped[str | None] = mapped_column(String(16))  # the ReserveNow answer
    reason: Mapped[str | None] = mapped_column(String(255))  # why it was rejected or cancelled
    transaction_id: Mapped[int | None]  # the transaction that used it
    fee_minor: Mapped[int] = mapped_column(BigInteger, default=0)  # held from the customer's wallet
    currency: Mapped[str | None] = mapped_column(String(3))
    fee_outcome: Mapped[str | None] = mapped_column(String(10))  # captured | refunded, once settled
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    ended_at: Mapped[datetime | None]

    charge_point: Mapped[ChargePoint] = relationship(lazy="joined")  # its id is in every view

    @property
    def charge_point_code(self) -> str:
        return self.charge_point.charge_point_id
