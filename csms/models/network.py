"""The charging network: stations (sites), the charge points at them, and their connectors."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKey, Numeric, SmallInteger, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from csms.models.base import Base, utcnow


class RegistrationStatus(StrEnum):
    """OCPP 1.6 RegistrationStatus, as answered to BootNotification."""

    ACCEPTED = "Accepted"
    PENDING = "Pending"
    REJECTED = "Rejected"


# OCPP security profiles a charger may connect with (OCPP 1.6 Security Whitepaper): 0 no
# authentication (identified by its URL alone; legacy chargers without Basic auth), 1 Basic auth,
# 2 Basic auth over TLS.
SECURITY_PROFILES = (0, 1, 2)
DEFAULT_SECURITY_PROFILE = 1


class Station(Base):
    __tablename__ = "stations"
    __table_args__ = (CheckConstraint("strategy IN ('equal', 'priority')", name="strategy"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    address: Mapped[str | None] = mapped_column(String(255))
    latitude: Mapped[Decimal | None] = mapped_column(Numeric(9, 6))
    longitude: Mapped[Decimal | None] = mapped_column(Numeric(9, 6))
    # Smart charging (csms.services.load_management): the grid connection, per phase or in total.
    max_current_a: Mapped[Decimal | None] = mapped_column(Numeric(7, 1))
    max_power_w: Mapped[int | None]
    min_current_a: Mapped[Decimal | None] = mapped_column(Numeric(5, 1))
    strategy: Mapped[str] = mapped_column(String(16), default="equal", server_default="equal")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    charge_points: Mapped[list[ChargePoint]] = relationship(back_populates="station")


class ChargePoint(Base):
    """A charger, known by its OCPP identity (`charge_point_id`, the last path segment of its URL).

    `auth_key_hash` holds the Basic-auth key salted and hashed; the key itself is never stored.
    `security_profile` says how it must connect (`SECURITY_PROFILES`; csms.ocpp.gateway checks it).
    The descriptive fields come from its last accepted BootNotification.
    """

    __tablename__ = "charge_points"
    __table_args__ = (
        CheckConstraint(
            "registration_status IN ('Accepted', 'Pending', 'Rejected')", name="registration_status"
        ),
        CheckConstraint("security_profile IN (0, 1, 2)", name="security_profile"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    charge_point_id: Mapped[str] = mapped_column(String(48), unique=True)
    auth_key_hash: Mapped[str | None] = mapped_column(String(255))
    registration_status: Mapped[str] = mapped_column(String(16), default=RegistrationStatus.ACCEPTED)
    security_profile: Mapped[int] = mapped_column(
        SmallInteger, default=DEFAULT_SECURITY_PROFILE, server_default=str(DEFAULT_SECURITY_PROFILE)
    )
    station_id: Mapped[int | None] = mapped_column(ForeignKey("stations.id", ondelete="SET NULL"), index=True)
    tariff_id: Mapped[int | None] = mapped_column(ForeignKey("tariffs.id", ondelete="SET NULL"))
    vendor: Mapped[str | None] = mapped_column(String(20))
    model: Mapped[str | None] = mapped_column(String(20))
    serial_number: Mapped[str | None] = mapped_column(String(25))
    firmware_version: Mapped[str | None] = mapped_column(String(50))
    iccid: Mapped[str | None] = mapped_column(String(20))
    imsi: Mapped[str | None] = mapped_column(String(20))
    meter_type: Mapped[str | None] = mapped_column(String(25))
    meter_serial_number: Mapped[str | None] = mapped_column(String(25))
    # The most one connector draws (per phase); a site counts a charger that refuses profiles at it.
    max_current_a: Mapped[Decimal | None] = mapped_column(Numeric(5, 1))
    last_boot_at: Mapped[datetime | None]
    last_seen_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    station: Mapped[Station | None] = relationship(back_populates="charge_points")
    connectors: Mapped[list[Connector]] = relationship(
        back_populates="charge_point", cascade="all, delete-orphan", order_by="Connector.connector_id"
    )


class Connector(Base):
    """A connector's last known state. Connector 0 stands for the charge point as a whole (OCPP 1.6 §4.9).

    `status_at` is the charger's own timestamp of the StatusNotification that set the state, so an
    older notification delivered late never overwrites a newer one.
    """

    __tablename__ = "connectors"
    __table_args__ = (
        UniqueConstraint("charge_point_id", "connector_id"),
        CheckConstraint("connector_id >= 0", name="connector_id_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    charge_point_id: Mapped[int] = mapped_column(ForeignKey("charge_points.id", ondelete="CASCADE"))
    connector_id: Mapped[int]
    status: Mapped[str] = mapped_column(String(16), default="Unavailable")
    error_code: Mapped[str] = mapped_column(String(32), default="NoError")
    info: Mapped[str | None] = mapped_column(String(50))
    vendor_id: Mapped[str | None] = mapped_column(String(255))
    vendor_error_code: Mapped[str | None] = mapped_column(String(50))
    status_at: Mapped[datetime | None]
    # ChangeAvailability (OCPP 1.6 §5.2): the type last asked, and whether it is `applied`, waits
    # for a running transaction to end (`scheduled`, the charger's Scheduled answer) or was `rejected`.
    availability: Mapped[str | None] = mapped_column(String(12))
    availability_state: Mapped[str | None] = mapped_column(String(10))
    availability_at: Mapped[datetime | None]  # when it was asked
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    charge_point: Mapped[ChargePoint] = relationship(back_populates="connectors")
