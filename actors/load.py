"""Load management: a site's shares computed anew and sent to its chargers
(csms.services.load_management), whenever something that changes them happens."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

import dramatiq
from flask import current_app

from csms.cluster import charger_calls
from csms.extensions import db
from csms.models import ChargePoint
from csms.services import load_management


@dramatiq.actor(queue_name="smart_charging", max_retries=5, min_backoff=200, max_backoff=10_000)
def reallocate_sites(triggers: list) -> None:
    """Reallocate each site named by `triggers` (`{"station_id" or "charge_point_id", "reason",
    "boot"}`): a transaction started or stopped, a charger booted or went offline, the limit changed,
    a car draws far less than it is allowed. Safe to run twice: a site reallocated since this
    message arrived is left alone."""
    received = datetime.now(UTC)  # after the commit of whatever sent it
    sites: dict[int, list[str]] = defaultdict(list)
    booted: dict[int, set[int]] = defaultdict(set)
    named = {t["charge_point_id"] for t in triggers if t.get("charge_point_id")}
    chargers = {}
    if named:
        rows = db.session.execute(
            db.select(ChargePoint.charge_point_id, ChargePoint.id, ChargePoint.station_id).where(
                ChargePoint.charge_point_id.in_(named)
            )
        )
        chargers = {row.charge_point_id: (row.id, row.station_id) for row in rows}
    db.session.rollback()
    for trigger in triggers:
        station_id = trigger.get("station_id")
        pk = None
        if trigger.get("charge_point_id") in chargers:
            pk, station_id = chargers[trigger["charge_point_id"]]
        if station_id is None:
            continue
        sites[station_id].append(trigger.get("reason") or "unknown")
        if trigger.get("boot") and pk is not None:
            booted[station_id].add(pk)
    calls = charger_calls.for_app(current_app)
    timeout = current_app.config["LOAD_CALL_TIMEOUT"]
    for station_id, reasons in sites.items():
        load_management.reallocate(
            station_id,
            ", ".join(sorted(set(reasons))),
            calls,
            timeout,
            triggered_at=received,
            booted=tuple(sorted(booted[station_id])),
        )
