"""Smart charging: the charging profiles stored per charger and connector, what each running
transaction of a limited site is allowed (the CSMS's own TxProfiles), and the history of changes."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from csms.models.base import Base, BigId, JsonDoc, utcnow

if TYPE_CHECKING:
    from csms.models.network import ChargePoint

# A running transaction's allocation: the charger follows the CSMS; refuses profiles (counted at its
# maximum); did not answer (counted at its last); has not been given a share yet.
STEERED, REJECTS, UNANSWERED, WAITING = "steered", "rejects", "unanswered", "waiting"


class ChargingProfile(Base):
    """An OCPP 1.6 charging profile for one connector of one charger (connector 0: the whole
    charger), as sent with SetChargingProfile, and the charger's answer.

    `profile` is the `csChargingProfiles` object exactly as sent; its purpose, stack level and the
    OCPP `chargingProfileId` are columns too, to find and clear it. `source` tells an operator's
    profile from the load manager's own (csms.services.load_management).
    """

    __tablename__ = "charging_profiles"
    __table_args__ = (
        CheckConstraint(
            "purpose IN ('ChargePointMaxProfile', 'TxDefaultProfile', 'TxProfile')", name="purpose"
        ),
        CheckConstraint("source IN ('operator', 'load')", name="source"),
        CheckConstraint(
            "status IN ('pending', 'Accepted', 'Rejected', 'NotSupported', 'failed', 'cleared')",
            name="status",
        ),
        CheckConstraint("connector_id >= 0", name="connector_id_not_negative"),
        Index("ix_charging_profiles_cp_connector", "charge_point_id", "connector_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    charge_point_id: Mapped[int] = mapped_column(ForeignKey("charge_points.id", ondelete="CASCADE"))
    connector_id: Mapped[int]
    profile_id: Mapped[int]  # OCPP chargingProfileId
    purpose: Mapped[str] = mapped_column(String(24))
    stack_level: Mapped[int]
    transaction_id: Mapped[int | None]
    profile: Mapped[dict] = mapped_column(JsonDoc)
    source: Mapped[str] = mapped_column(String(16), default="operator")
    status: Mapped[str] = mapped_column(String(16), default="pending")
    response: Mapped[dict | None] = mapped_column(JsonDoc)
    error: Mapped[str | None] = mapped_column(String(255))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    answered_at: Mapped[datetime | None]
    cleared_at: Mapped[datetime | None]

    charger: Mapped[ChargePoint] = relationship(lazy="joined")


class LoadAllocation(Base):
    """What one running transaction at a limited site is allowed now, in the site's unit step
    (tenths of an ampere, or watts), and what the CSMS is sending it.

    `allowed` is what the site counts it at: raised as soon as a raise is *sent* (the charger may
    apply it before answering), lowered only once a lowering is *accepted*. `state` says whether
    the charger follows the CSMS (`steered`), refuses profiles (`rejects`: counted at its maximum)
    or did not answer (`unanswered`: counted at what it was last allowed).
    """

    __tablename__ = "load_allocations"
    __table_args__ = (
        UniqueConstraint("charge_point_id", "connector_id"),
        CheckConstraint("state IN ('steered', 'rejects', 'unanswered', 'waiting')", name="state"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    station_id: Mapped[int] = mapped_column(ForeignKey("stations.id", ondelete="CASCADE"), index=True)
    charge_point_id: Mapped[int] = mapped_column(ForeignKey("charge_points.id", ondelete="CASCADE"))
    connector_id: Mapped[int]
    transaction_id: Mapped[int] = mapped_column(BigInteger)
    allowed: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(16), default="waiting")
    measured: Mapped[int | None] = mapped_column(Integer)  # last measured draw, same unit
    measured_at: Mapped[datetime | None]
    wants: Mapped[int | None] = mapped_column(Integer)  # reclaim: capped near its draw (load_allocation)
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)  # its last profile sent
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class LoadChange(Base):
    """One recorded instant of a site's load management: why, the limit, and every connector's
    allowed value with their sum. The sum never exceeds the limit (csms.services.load_management
    refuses to record it otherwise)."""

    __tablename__ = "load_changes"
    __table_args__ = (Index("ix_load_changes_station_at", "station_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    station_id: Mapped[int] = mapped_column(ForeignKey("stations.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    event: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(String(100))
    limit: Mapped[int] = mapped_column(Integer)
    allowed_sum: Mapped[int] = mapped_column(Integer)
    allocations: Mapped[dict] = mapped_column(JsonDoc)
