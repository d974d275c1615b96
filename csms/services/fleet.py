"""Finding chargers and what happened at one: the operator's searchable list and a charger's records.

"Online" means connected to any node of the cluster (csms.cluster.presence); every filter and page is
one SQL query on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select

from csms.cluster import presence
from csms.extensions import db
from csms.models import (
    ChargePoint,
    ChargingSession,
    CommandAudit,
    Connector,
    MeterSample,
    OcppMessage,
    Transaction,
)
from csms.models.charging import TransactionState

CONNECTION_FILTERS = ("online", "offline")
REGISTRATION_FILTERS = ("Accepted", "Pending", "Rejected")


@dataclass(frozen=True)
class Page:
    items: list[Any]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def search(
    *,
    q: str = "",
    connection: str = "",
    registration: str = "",
    status: str = "",
    page: int = 1,
    per_page: int = 50,
) -> Page:
    """Chargers matching the text (id, vendor, model, firmware), the connection state, the
    registration status and a connector status, ordered by id."""
    query = select(ChargePoint)
    if q:
        pattern = f"%{q}%"
        query = query.where(
            or_(
                ChargePoint.charge_point_id.ilike(pattern),
                ChargePoint.vendor.ilike(pattern),
                ChargePoint.model.ilike(pattern),
                ChargePoint.firmware_version.ilike(pattern),
            )
        )
    if connection in CONNECTION_FILTERS:
        query = query.where(presence.connected_filter(ChargePoint.charge_point_id, connection == "online"))
    if registration in REGISTRATION_FILTERS:
        query = query.where(ChargePoint.registration_status == registration)
    if status:
        query = query.where(
            ChargePoint.id.in_(
                select(Connector.charge_point_id).where(
                    Connector.status == status, Connector.connector_id > 0
                )
            )
        )
    total = db.session.scalar(select(func.count()).select_from(query.subquery())) or 0
    items = db.session.scalars(
        query.order_by(ChargePoint.charge_point_id).offset((page - 1) * per_page).limit(per_page)
    ).all()
    return Page(list(items), total, page, per_page)


def by_id(charge_point_id: str) -> ChargePoint | None:
    return db.session.scalar(select(ChargePoint).where(ChargePoint.charge_point_id == charge_point_id))


def running_transactions(point: ChargePoint) -> list[Transaction]:
    return list(
        db.session.scalars(
            select(Transaction)
            .where(Transaction.charge_point_id == point.id, Transaction.state == TransactionState.STARTED)
            .order_by(Transaction.connector_id)
        )
    )


def recent_transactions(point: ChargePoint, limit: int = 20) -> list[tuple[Transaction, int | None]]:
    """The charger's latest transactions with their session's cost (minor units), newest first."""
    rows = db.session.execute(
        select(Transaction, ChargingSession.cost_minor)
        .outerjoin(ChargingSession, ChargingSession.transaction_id == Transaction.id)
        .where(Transaction.charge_point_id == point.id)
        .order_by(Transaction.id.desc())
        .limit(limit)
    )
    return [(transaction, cost) for transaction, cost in rows]


def recent_messages(charge_point_id: str, limit: int = 50) -> list[OcppMessage]:
    return list(
        db.session.scalars(
            select(OcppMessage)
            .where(OcppMessage.charge_point_id == charge_point_id)
            .order_by(OcppMessage.id.desc())
            .limit(limit)
        )
    )


def recent_commands(charge_point_id: str, limit: int = 20) -> list[CommandAudit]:
    return list(
        db.session.scalars(
            select(CommandAudit)
            .where(CommandAudit.charge_point_id == charge_point_id)
            .order_by(CommandAudit.id.desc())
            .limit(limit)
        )
    )


# What the live chart of a transaction plots: energy (the register, Wh) and power (W).
CHART_MEASURANDS = ("Energy.Active.Import.Register", "Power.Active.Import")


def chart_samples(transaction_id: int, limit: int = 2000) -> list[tuple[str, str, float]]:
    """A transaction's register and power samples, oldest first, as (ISO time, measurand, value) for
    the chart (floats are fine here: they are drawn, never summed or billed)."""
    rows = db.session.execute(
        select(MeterSample.sampled_at, MeterSample.measurand, MeterSample.value)
        .where(
            MeterSample.transaction_id == transaction_id,
            MeterSample.measurand.in_(CHART_MEASURANDS),
            MeterSample.phase == "",
        )
        .order_by(MeterSample.sampled_at.desc())
        .limit(limit)
    ).all()
    return [(at.isoformat(), measurand, float(value)) for at, measurand, value in reversed(rows)]
