"""Emitting live events to Socket.IO rooms. Best-effort: a few quick retries, then dropped with a log
line; billing and storage never wait on it."""

import dramatiq

from csms import realtime


@dramatiq.actor(
    queue_name="notifications", max_retries=3, min_backoff=200, max_backoff=2_000, time_limit=10_000
)
def notify(events: list) -> None:
    """Emit each `[event, data, rooms]` to its rooms (and as `notification`)."""
    realtime.emit_all(events)
