"""Energy, revenue, sessions and utilization over a period, per day, station or charger.

Computed in SQL on SQLite and PostgreSQL alike: timestamps become seconds since 1970
(`sql.epoch_seconds`), so a transaction's share of a window is plain arithmetic. What counts:

- `sessions` and `energyWh`: the transactions that started in the window (energy so far for one
  still running), so a transaction is counted once, in the window it began;
- `revenue`: what those transactions were billed, per currency: the final cost of their customer
  sessions, and what was charged to a wallet or owed without a session;
- `unbilled` / `unbilledWh`: what was delivered past a session's prepaid amount and not charged;
- `utilization`: the share of connector time occupied by a transaction (from its start to its stop,
  or to now) within the window, over the group's connectors: a charger with two connectors, one
  busy the whole day, is 0.5 for that day.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Float, String, case, cast, func, literal, select, union_all

from csms.extensions import db
from csms.models import ChargePoint, ChargingSession, Connector, LedgerEntry, LedgerKind, Station, Transaction
from csms.models.charging import SessionState
from csms.services import sql
from csms.services.errors import InvalidInput

GROUPINGS = ("day", "station", "chargePoint")
EARLIEST, LATEST = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
MAX_DAYS = 366
UNASSIGNED = "unassigned"


@dataclass
class Group:
    key: str
    label: str
    connectors: int = 0
    energy_wh: int = 0
    sessions: int = 0
    occupied_seconds: int = 0
    revenue_minor: dict[str, int] = field(default_factory=dict)
    unbilled_minor: dict[str, int] = field(default_factory=dict)
    unbilled_wh: int = 0
    window_seconds: float = 0.0

    @property
    def utilization(self) -> float:
        capacity = self.connectors * self.window_seconds
        return round(min(self.occupied_seconds / capacity, 1.0), 4) if capacity else 0.0


def period(start: datetime | None, end: datetime | None, now: datetime) -> tuple[datetime, datetime]:
    """[start, end) as asked: `end` defaults to now and `start` to 30 days before it. Both must lie
    in 2000..2100 (a charging network's records; and no date arithmetic overflows there)."""
    end = end or now
    if not EARLIEST <= end <= LATEST or (start is not None and not EARLIEST <= start <= LATEST):
        raise InvalidInput("`from` and `to` must lie between 2000 and 2100", code="invalid_period")
    return start or end - timedelta(days=30), end


def report(start: datetime, end: datetime, group_by: str, now: datetime) -> list[Group]:
    """The groups of [start, end) in key order; every day, station or charger appears, idle or not."""
    if group_by not in GROUPINGS:
        raise InvalidInput(f"groupBy must be one of {', '.join(GROUPINGS)}", code="invalid_grouping")
    if end <= start:
        raise InvalidInput("`to` must be after `from`", code="invalid_period")
    if end - start > timedelta(days=MAX_DAYS):
        raise InvalidInput(f"a report covers at most {MAX_DAYS} days", code="invalid_period")
    if group_by == "day":
        return _by_day(start, end, now)
    return _by_place(start, end, now, group_by)


def _epochs(now: datetime):
    session = db.session
    started = sql.epoch_seconds(session, Transaction.started_at)
    stopped = sql.epoch_seconds(
        session, func.coalesce(Transaction.stopped_at, literal(now, Transaction.started_at.type))
    )
    return started, stopped


def _energy():
    return func.coalesce(Transaction.energy_wh, Transaction.meter_last_wh - Transaction.meter_start_wh, 0)


def _overlap(started, stopped, window_start, window_end):
    session = db.session
    return sql.greatest(
        session,
        literal(0.0),
        sql.least(session, stopped, window_end) - sql.greatest(session, started, window_start),
    )


def _network_connectors() -> int:
    return (
        db.session.scalar(select(func.count()).select_from(Connector).where(Connector.connector_id > 0)) or 0
    )


def _by_day(start: datetime, end: datetime, now: datetime) -> list[Group]:
    days: list[tuple[str, float, float]] = []
    cursor = start
    while cursor < end:
        following = min(cursor + timedelta(days=1), end)
        days.append((cursor.date().isoformat(), cursor.timestamp(), following.timestamp()))
        cursor = following
    groups = {
        key: Group(key, key, connectors=_network_connectors(), window_seconds=window_end - window_start)
        for key, window_start, window_end in days
    }
    # The days as a derived table (a UNION of one-row SELECTs: SQLite names no VALUES columns).
    calendar = union_all(
        *(
            select(
                literal(key, String).label("day"),
                literal(window_start, Float).label("day_start"),
                literal(window_end, Float).label("day_end"),
            )
            for key, window_start, window_end in days
        )
    ).cte("calendar")
    started, stopped = _epochs(now)
    starts_here = (started >= calendar.c.day_start) & (started < calendar.c.day_end)
    rows = db.session.execute(
        select(
            calendar.c.day,
            func.sum(_overlap(started, stopped, calendar.c.day_start, calendar.c.day_end)),
            func.sum(case((starts_here, 1), else_=0)),
            func.sum(case((starts_here, 1), else_=0) * _energy()),
        )
        .select_from(calendar)
        .join(Transaction, (started < calendar.c.day_end) & (stopped > calendar.c.day_start))
        .group_by(calendar.c.day)
    )
    for day, occupied, sessions, energy in rows:
        group = groups[day]
        group.occupied_seconds, group.sessions, group.energy_wh = (
            round(float(occupied or 0)),  # whole seconds: SQLite's julianday is a float
            int(sessions or 0),
            int(energy or 0),
        )
    _add_money(
        groups,
        calendar.c.day,
        lambda q: q.select_from(calendar).join(
            Transaction, (started >= calendar.c.day_start) & (started < calendar.c.day_end)
        ),
    )
    return list(groups.values())


def _by_place(start: datetime, end: datetime, now: datetime, group_by: str) -> list[Group]:
    if group_by == "station":
        key = func.coalesce(cast(ChargePoint.station_id, String), UNASSIGNED)
        places = db.session.execute(select(cast(Station.id, String), Station.name)).all()
        groups = {str(k): Group(str(k), name) for k, name in places}
        groups[UNASSIGNED] = Group(UNASSIGNED, "No station")
    else:
        key = ChargePoint.charge_point_id
        groups = {
            cp: Group(cp, cp)
            for cp in db.session.scalars(
                select(ChargePoint.charge_point_id).order_by(ChargePoint.charge_point_id)
            )
        }
    window = end.timestamp() - start.timestamp()
    for group in groups.values():
        group.window_seconds = window
    connectors = db.session.execute(
        select(key, func.count())
        .select_from(Connector)
        .join(ChargePoint, ChargePoint.id == Connector.charge_point_id)
        .where(Connector.connector_id > 0)
        .group_by(key)
    )
    for place, count in connectors:
        groups[str(place)].connectors = int(count)
    started, stopped = _epochs(now)
    window_start, window_end = literal(start.timestamp()), literal(end.timestamp())
    starts_here = (started >= window_start) & (started < window_end)
    rows = db.session.execute(
        select(
            key,
            func.sum(_overlap(started, stopped, window_start, window_end)),
            func.sum(case((starts_here, 1), else_=0)),
            func.sum(case((starts_here, 1), else_=0) * _energy()),
        )
        .select_from(Transaction)
        .join(ChargePoint, ChargePoint.id == Transaction.charge_point_id)
        .where(started < window_end, stopped > window_start)
        .group_by(key)
    )
    for place, occupied, sessions, energy in rows:
        group = groups[str(place)]
        group.occupied_seconds, group.sessions, group.energy_wh = (
            round(float(occupied or 0)),  # whole seconds: SQLite's julianday is a float
            int(sessions or 0),
            int(energy or 0),
        )
    _add_money(
        groups,
        key,
        lambda q: (
            q.select_from(Transaction)
            .join(ChargePoint, ChargePoint.id == Transaction.charge_point_id)
            .where(starts_here)
        ),
    )
    return sorted(groups.values(), key=lambda group: (group.key == UNASSIGNED, group.label))


def _add_money(groups: dict[str, Group], key, frame) -> None:
    """Revenue and unbilled amounts per group and currency; `frame` joins a query to the window's
    transactions. Sessions bring their final cost and what they left unbilled; transactions billed
    without a session (and a postpaid session's overrun) bring their ledger charges and open balances."""
    sessions = db.session.execute(
        frame(
            select(
                key,
                ChargingSession.currency,
                func.sum(ChargingSession.cost_minor),
                func.sum(ChargingSession.unbilled_minor),
                func.sum(ChargingSession.unbilled_wh),
            )
        )
        .join(ChargingSession, ChargingSession.transaction_id == Transaction.id)
        .where(ChargingSession.state == SessionState.COMPLETED)
        .group_by(key, ChargingSession.currency)
    )
    for place, currency, revenue, unbilled, unbilled_wh in sessions:
        group = groups[str(place)]
        group.revenue_minor[currency] = group.revenue_minor.get(currency, 0) + int(revenue or 0)
        if unbilled:
            group.unbilled_minor[currency] = group.unbilled_minor.get(currency, 0) + int(unbilled)
        group.unbilled_wh += int(unbilled_wh or 0)
    billed = db.session.execute(
        frame(select(key, LedgerEntry.currency, func.sum(LedgerEntry.amount_minor)))
        .join(LedgerEntry, LedgerEntry.transaction_id == Transaction.id)
        .where(LedgerEntry.kind.in_([LedgerKind.CHARGE, LedgerKind.OPEN_BALANCE]))
        .group_by(key, LedgerEntry.currency)
    )
    for place, currency, total in billed:
        group = groups[str(place)]
        group.revenue_minor[currency] = group.revenue_minor.get(currency, 0) + int(total or 0)
