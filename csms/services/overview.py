"""The network at a glance, for the operator's overview page: one query per figure, in SQL that runs
on SQLite and PostgreSQL alike.

"Online" means connected to any node of the cluster (csms.cluster.presence), whichever node draws
the page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from csms.cluster import presence
from csms.extensions import db
from csms.models import ChargePoint, Connector, LedgerEntry, Transaction
from csms.models.charging import TransactionState
from csms.models.wallet import LedgerKind

# Connector states an operator must act on; the rest are the normal life of a connector.
FAULTED = "Faulted"


@dataclass(frozen=True)
class ConnectorView:
    charge_point_id: str
    connector_id: int
    status: str
    error_code: str
    status_at: datetime | None


@dataclass(frozen=True)
class Summary:
    chargers: int
    online: int
    faulted_chargers: int
    connectors_by_status: dict[str, int]
    active_transactions: int
    energy_today_wh: int
    revenue_today_minor: dict[str, int]  # by currency

    @property
    def offline(self) -> int:
        return self.chargers - self.online


@dataclass(frozen=True)
class OfflineCharger:
    charge_point_id: str
    last_seen_at: datetime | None


def summary(day_start: datetime) -> Summary:
    """Counts for the overview; `day_start` is the start of "today" (UTC) for energy and revenue."""
    registered = db.session.scalar(select(func.count()).select_from(ChargePoint))
    connected_registered = db.session.scalar(
        select(func.count())
        .select_from(ChargePoint)
        .where(presence.connected_filter(ChargePoint.charge_point_id, True))
    )
    by_status = dict(
        db.session.execute(
            select(Connector.status, func.count())
            .where(Connector.connector_id > 0)
            .group_by(Connector.status)
        ).all()
    )
    faulted = db.session.scalar(
        select(func.count(func.distinct(Connector.charge_point_id))).where(Connector.status == FAULTED)
    )
    active = db.session.scalar(
        select(func.count()).select_from(Transaction).where(Transaction.state == TransactionState.STARTED)
    )
    # Energy of the transactions that ended today, and of the running ones so far.
    ended = db.session.scalar(
        select(func.coalesce(func.sum(Transaction.energy_wh), 0)).where(Transaction.stopped_at >= day_start)
    )
    running = db.session.scalar(
        select(func.coalesce(func.sum(Transaction.meter_last_wh - Transaction.meter_start_wh), 0)).where(
            Transaction.state == TransactionState.STARTED, Transaction.meter_last_wh.is_not(None)
        )
    )
    revenue = dict(
        db.session.execute(
            select(LedgerEntry.currency, func.sum(LedgerEntry.amount_minor))
            .where(LedgerEntry.kind == LedgerKind.CAPTURE, LedgerEntry.created_at >= day_start)
            .group_by(LedgerEntry.currency)
        ).all()
    )
    return Summary(
        chargers=registered or 0,
        online=connected_registered or 0,
        faulted_chargers=faulted or 0,
        connectors_by_status={status: int(count) for status, count in by_status.items()},
        active_transactions=active or 0,
        energy_today_wh=int(ended) + max(int(running), 0),
        revenue_today_minor={currency: int(total) for currency, total in revenue.items()},
    )


def connectors(limit: int = 2000) -> list[ConnectorView]:
    """Every charger's connectors (connector 0, the charger itself, left out), by charger and number."""
    return _connector_views(
        Connector.connector_id > 0, (ChargePoint.charge_point_id, Connector.connector_id), limit
    )


def faulted_connectors(limit: int = 50) -> list[ConnectorView]:
    """Faulted connectors (the charger itself too), the latest fault first."""
    return _connector_views(Connector.status == FAULTED, (Connector.status_at.desc(),), limit)


def _connector_views(where: Any, order_by: tuple, limit: int) -> list[ConnectorView]:
    rows = db.session.execute(
        select(
            ChargePoint.charge_point_id,
            Connector.connector_id,
            Connector.status,
            Connector.error_code,
            Connector.status_at,
        )
        .join(ChargePoint, ChargePoint.id == Connector.charge_point_id)
        .where(where)
        .order_by(*order_by)
        .limit(limit)
    )
    return [ConnectorView(*row) for row in rows]


def offline_for(minutes: int, now: datetime, limit: int = 50) -> list[OfflineCharger]:
    """Accepted chargers connected to no node and silent for more than `minutes` (or never seen)."""
    cutoff = now - timedelta(minutes=minutes)
    rows = db.session.execute(
        select(ChargePoint.charge_point_id, ChargePoint.last_seen_at)
        .where(ChargePoint.registration_status == "Accepted")
        .where((ChargePoint.last_seen_at < cutoff) | ChargePoint.last_seen_at.is_(None))
        .where(presence.connected_filter(ChargePoint.charge_point_id, False))
        .order_by(ChargePoint.last_seen_at.desc().nulls_last(), ChargePoint.charge_point_id)
        .limit(limit)
    )
    return [OfflineCharger(cp, seen) for cp, seen in rows]
