"""Timestamps: OCPP times are UTC; one a charger sends without an offset (some firmwares) is read as
UTC. Our own are made cheaply, as they go on every frame."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def parse_utc(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # year 9999 west of UTC, or year 1 east of it: the nearest time there is
        return (datetime.max if parsed.year == datetime.max.year else datetime.min).replace(tzinfo=UTC)


# The formatted date and time of the current second, made once per second: a timestamp on every
# OCPP frame then costs a fraction of `datetime.now(UTC).isoformat()` (figures in bench/README.md).
_second = [-1, ""]


def utc_now_iso() -> str:
    """Now in UTC, ISO 8601 with microseconds and offset (`2026-11-25T20:10:05.123456+00:00`): what
    `datetime.now(UTC).isoformat()` gives, except that the microseconds are always written."""
    second, nanoseconds = divmod(time.time_ns(), 1_000_000_000)
    if second != _second[0]:
        _second[:] = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    return f"{_second[1]}.{nanoseconds // 1000:06d}+00:00"


def utc_now_iso_ms() -> str:
    """Now in UTC to the millisecond with a `Z` (`2026-11-25T20:10:05.123Z`): what chargers are sent."""
    return utc_now_iso()[:23] + "Z"
