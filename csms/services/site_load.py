"""A limited site (csms.services.load_management): its limit in steps, the draws its cars are
measured at (and what the load manager reclaims from a car that draws far less than its share),
and what operators see of it.

Amounts are integers in the site's step: tenths of an ampere (per phase) for a current limit, watts
for a power limit (csms.services.load_allocation).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from sqlalchemy import select

from csms.extensions import db
from csms.models import ChargePoint, LoadAllocation, LoadChange, Station
from csms.models.smart_charging import STEERED, UNANSWERED
from csms.services import charging_schedules, load_allocation

DEFAULT_CHARGER_MAX_A = Decimal(32)  # a charger whose maximum nobody entered
THREE_PHASES = 3  # a power limit is shared as three-phase power (the worst case for a current)
RECLAIM_MARGIN_A = Decimal(2)  # a car drawing this far below its share gives the rest back
RECLAIM_HEADROOM_A = Decimal(1)  # and keeps this much above its draw
RECLAIM_SETTLE = timedelta(seconds=3)  # a car follows a new share within this
RESEND_AFTER = timedelta(seconds=10)  # a share its charger did not take is sent again after this


# --- the site --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Site:
    station_id: int
    unit: str  # "A" (steps of 0.1 A per phase) or "W"
    limit: int
    minimum: int
    strategy: str

    @classmethod
    def of(cls, station: Station) -> Site | None:
        """The site's limit in steps, or None when the station has none."""
        if station.max_current_a is not None:
            unit, limit = "A", steps(station.max_current_a, "A")
        elif station.max_power_w is not None:
            unit, limit = "W", station.max_power_w
        else:
            return None
        minimum = steps(station.min_current_a, unit) if station.min_current_a is not None else 0
        return cls(station.id, unit, limit, minimum, station.strategy)

    def charger_maximum(self, max_current_a: Decimal | None) -> int:
        return steps(max_current_a if max_current_a is not None else DEFAULT_CHARGER_MAX_A, self.unit)

    def shown(self, steps: int | None) -> float | None:
        """Steps as the unit's number: amperes with one decimal, or watts."""
        if steps is None:
            return None
        return steps / 10 if self.unit == "A" else steps


def steps(current_a: Decimal, unit: str) -> int:
    """A per-phase current in the site's steps, floored (never more than the current)."""
    if unit == "A":
        return int((Decimal(current_a) * 10).to_integral_value(ROUND_FLOOR))
    return int(
        (Decimal(current_a) * charging_schedules.VOLTAGE * THREE_PHASES).to_integral_value(ROUND_FLOOR)
    )


def measuredsteps(unit: str, current_a: Decimal | None, power_w: Decimal | None) -> int | None:
    """A car's measured draw in the site's steps, from its Current.Import (per phase) or
    Power.Active.Import sample."""
    if unit == "A":
        if current_a is not None:
            return steps(current_a, "A")
        if power_w is not None:
            return steps(power_w / (charging_schedules.VOLTAGE * THREE_PHASES), "A")
        return None
    if power_w is not None:
        return int(power_w)
    return steps(current_a, "W") if current_a is not None else None


# --- measurements (the metering actor) --------------------------------------------------------------


def record_draws(draws: dict[int, tuple[Decimal | None, Decimal | None, datetime]]) -> dict[int, str]:
    """Store each transaction's latest measured draw (`{transaction id: (Current.Import A,
    Power.Active.Import W, at)}`) on its allocation; returns the sites to reallocate, with why: a car
    that draws far less than it is allowed gives the rest back, or wants its share again
    (csms.services.load_allocation.reclaim); a car whose charger did not take its last share, which
    may still hold it at its TxDefaultProfile of 0, is sent it again (no more often than
    RESEND_AFTER: a charger that never answers costs a call timeout each time)."""
    if not draws:
        return {}
    rows = db.session.execute(
        select(LoadAllocation, Station)
        .join(Station, Station.id == LoadAllocation.station_id)
        .where(LoadAllocation.transaction_id.in_(list(draws)))
        .with_for_update(of=LoadAllocation)
    ).all()
    changed = {}
    for row, station in rows:
        site = Site.of(station)
        current_a, power_w, at = draws[row.transaction_id]
        if site is None or (row.measured_at is not None and row.measured_at > at):
            continue
        row.measured, row.measured_at = measuredsteps(site.unit, current_a, power_w), at
        if row.state == UNANSWERED and at >= row.changed_at + RESEND_AFTER:
            changed.setdefault(site.station_id, "unanswered")
            continue
        if row.state != STEERED or at < row.changed_at + RECLAIM_SETTLE:
            continue  # a sample from before the car could follow its latest share says nothing
        wants = load_allocation.reclaim(
            row.wants,
            row.measured,
            row.allowed,
            steps(RECLAIM_MARGIN_A, site.unit),
            steps(RECLAIM_HEADROOM_A, site.unit),
        )
        if wants != row.wants:
            row.wants = wants
            changed[site.station_id] = "reclaim"
    return changed


# --- what operators see -----------------------------------------------------------------------------

HISTORY = 50


def load_of(station: Station) -> dict[str, Any]:
    """The site's limit, each running transaction's allowed value and measured draw, and its last
    changes (newest first)."""
    site = Site.of(station)
    unit = site.unit if site else None
    allocations = db.session.execute(
        select(LoadAllocation, ChargePoint.charge_point_id)
        .join(ChargePoint, ChargePoint.id == LoadAllocation.charge_point_id)
        .where(LoadAllocation.station_id == station.id)
        .order_by(ChargePoint.charge_point_id, LoadAllocation.connector_id)
    ).all()
    names = dict(
        db.session.execute(
            select(ChargePoint.id, ChargePoint.charge_point_id).where(ChargePoint.station_id == station.id)
        ).all()
    )

    def shown(steps: int | None) -> float | None:
        return site.shown(steps) if site else None

    changes = db.session.scalars(
        select(LoadChange)
        .where(LoadChange.station_id == station.id)
        .order_by(LoadChange.id.desc())
        .limit(HISTORY)
    )
    return {
        "station_id": station.id,
        "unit": unit,
        "limit": shown(site.limit) if site else None,
        "min_current_a": station.min_current_a,
        "strategy": station.strategy,
        "allowed_sum": shown(sum(row.allowed for row, _ in allocations)),
        "measured_sum": shown(sum(row.measured or 0 for row, _ in allocations)),
        "allocations": [
            {
                "charge_point_id": name,
                "connector_id": row.connector_id,
                "transaction_id": row.transaction_id,
                "allowed": shown(row.allowed),
                "state": row.state,
                "measured": shown(row.measured),
                "measured_at": row.measured_at,
                "capped_at": shown(row.wants),
            }
            for row, name in allocations
        ],
        "history": [
            {
                "at": change.at,
                "event": change.event,
                "reason": change.reason,
                "limit": shown(change.limit),
                "allowed_sum": shown(change.allowed_sum),
                "allocations": {
                    _named(names, key): {**value, "allowed": shown(value["allowed"])}
                    for key, value in change.allocations.items()
                },
            }
            for change in changes
        ],
    }


def _named(names: dict[int, str], key: str) -> str:
    pk, _, connector = key.partition("/")
    return f"{names.get(int(pk), pk)}/{connector}"


def station_of(charge_point_pks: set[int]) -> dict[int, int]:
    """The limited site of each charger that has one (`{charger key: station id}`)."""
    if not charge_point_pks:
        return {}
    rows = db.session.execute(
        select(ChargePoint.id, ChargePoint.station_id)
        .join(Station, Station.id == ChargePoint.station_id)
        .where(
            ChargePoint.id.in_(charge_point_pks),
            (Station.max_current_a.is_not(None)) | (Station.max_power_w.is_not(None)),
        )
    )
    return dict(rows.all())


def of_charger(charge_point_pk: int) -> tuple[Site | None, list[LoadAllocation]]:
    """The limited site a charger is part of, and what its running transactions are allowed."""
    station = db.session.scalar(
        select(Station)
        .join(ChargePoint, ChargePoint.station_id == Station.id)
        .where(ChargePoint.id == charge_point_pk)
    )
    site = Site.of(station) if station is not None else None
    if site is None:
        return None, []
    rows = db.session.scalars(
        select(LoadAllocation)
        .where(LoadAllocation.charge_point_id == charge_point_pk)
        .order_by(LoadAllocation.connector_id)
    )
    return site, list(rows)
