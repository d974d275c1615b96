"""Load management: a site's shares computed anew and sent to its chargers
(csms.services.load_management), whenever something that changes them happens."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

import dramatiq
from flask import current_app

from actors import priorities
from csms.cluster import charger_calls
from csms.extensions import db
from csms.models import ChargePoint
from csms.services import load_management


@dramatiq.actor(
    queue_name="smart_charging", max_retries=5, min_backoff=200, max_backoff=10_000, priority=priorities.LIVE
)
def reallocate_sites(triggers: list) -> None:
    """Reallocate each site named by `triggers` (`{"station_id" or "charge_point_id", "reason",
    "booted": [charger keys to send their TxDefaultProfile], "at": first received, "attempt": how
    many times a TxDefaultProfile that did not get through was tried again}`): a transaction started
    or stopped, chargers booted or one went offline, the limit changed, a car draws far less than it
    is allowed. Safe to run twice: a site reallocated since this message first arrived is left
    alone; a site busy with another reallocation is tried again shortly."""
    now = datetime.now(UTC)  # after the commit of whatever sent it
    sites: dict[int, list[str]] = defaultdict(list)
    booted: dict[int, set[int]] = defaultdict(set)
    attempts: dict[int, int] = defaultdict(int)  # TxDefaultProfile retries so far
    since: dict[int, datetime] = {}
    chargers = _chargers({t["charge_point_id"] for t in triggers if t.get("charge_point_id")})
    for trigger in triggers:
        station_id = trigger.get("station_id")
        if trigger.get("charge_point_id") in chargers:
            station_id = chargers[trigger["charge_point_id"]]
        booted[station_id].update(trigger.get("booted") or ())
        attempts[station_id] = max(attempts[station_id], trigger.get("attempt") or 0)
        if station_id is None:
            continue
        sites[station_id].append(trigger.get("reason") or "unknown")
        at = datetime.fromisoformat(trigger["at"]) if trigger.get("at") else now
        since[station_id] = min(since.get(station_id, at), at)
    calls = charger_calls.for_app(current_app)
    timeout = current_app.config["LOAD_CALL_TIMEOUT"]
    for station_id, reasons in sites.items():
        reason = ", ".join(sorted(set(reasons)))
        result = load_management.reallocate(
            station_id,
            reason,
            calls,
            timeout,
            triggered_at=since[station_id],
            booted=tuple(sorted(booted[station_id])),
        )
        if result.outcome == "busy":  # another worker has the site: again shortly, as first received
            again = {
                "station_id": station_id,
                "reason": reason,
                "at": since[station_id].isoformat(),
                "booted": sorted(booted[station_id]),
                "attempt": attempts[station_id],
            }
            reallocate_sites.send_with_options(args=([again],), delay=BUSY_RETRY_MS)
        elif result.defaults_failed and attempts[station_id] < DEFAULTS_ATTEMPTS:
            # a charger that booted but did not take its TxDefaultProfile would let a car draw what
            # nobody allowed until the site's next reallocation: again soon, then less often
            again = {
                "station_id": station_id,
                "reason": "TxDefaultProfile again",
                "booted": list(result.defaults_failed),
                "attempt": attempts[station_id] + 1,
            }
            delay = DEFAULTS_RETRY_MS * 2 ** attempts[station_id]
            reallocate_sites.send_with_options(args=([again],), delay=delay)


BUSY_RETRY_MS = 200
DEFAULTS_RETRY_MS = 1_000  # then 2, 4, 8 and 16 s
DEFAULTS_ATTEMPTS = 5


def _chargers(named: set[str]) -> dict[str, int | None]:
    """{charge point id: its station}."""
    if not named:
        return {}
    rows = db.session.execute(
        db.select(ChargePoint.charge_point_id, ChargePoint.station_id).where(
            ChargePoint.charge_point_id.in_(named)
        )
    )
    found = {row.charge_point_id: row.station_id for row in rows}
    db.session.rollback()
    return found
