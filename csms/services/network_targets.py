"""The chargers a firmware or diagnostics job is for: named one by one, all of a station's, or both."""

from __future__ import annotations

from sqlalchemy import select

from csms.extensions import db
from csms.models import ChargePoint, Station
from csms.services import command_queue
from csms.services.errors import InvalidInput, NotFound

MAX_TARGETS = 1000
TRIGGER_TTL_SECONDS = 3600  # a status refresh is worth little after an hour


def resolve_targets(charge_point_ids: list[str], station_id: int | None) -> list[str]:
    """The chargers' ids, each once, in order; an unknown charger or station is 404, none at all 422."""
    wanted = list(dict.fromkeys(charge_point_ids))
    known = set(
        db.session.scalars(select(ChargePoint.charge_point_id).where(ChargePoint.charge_point_id.in_(wanted)))
    )
    missing = [cp for cp in wanted if cp not in known]
    if missing:
        raise NotFound(
            f"unknown charge point {missing[0]!r}",
            code="charge_point_not_found",
            details={"unknown": missing},
        )
    if station_id is not None:
        if db.session.get(Station, station_id) is None:
            raise NotFound(f"no station {station_id}", code="station_not_found")
        at_station = db.session.scalars(
            select(ChargePoint.charge_point_id)
            .where(ChargePoint.station_id == station_id)
            .order_by(ChargePoint.charge_point_id)
        )
        wanted.extend(cp for cp in at_station if cp not in wanted)
    if not wanted:
        raise InvalidInput("no target charger: name chargePointIds or a stationId", code="no_targets")
    if len(wanted) > MAX_TARGETS:
        raise InvalidInput(f"at most {MAX_TARGETS} chargers per job", code="too_many_targets")
    return wanted


def trigger(charge_point_ids: list[str], message: str, requested_by: int | None) -> list[str]:
    """Queue TriggerMessage `message` for each charger (sent at once to a connected one): its answer
    is the status notification that refreshes its target. Returns the queued commands' ids; the
    caller commits."""
    return [
        command_queue.enqueue(
            charge_point_id,
            "TriggerMessage",
            {"requestedMessage": message},
            ttl_seconds=TRIGGER_TTL_SECONDS,
            requested_by=requested_by,
        ).command_id
        for charge_point_id in dict.fromkeys(charge_point_ids)
    ]
