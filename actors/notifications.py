"""Live events: how actors publish them, and the actor that emits them to Socket.IO rooms.

A batch's events are emitted by the thread that committed it (`emit_committed`); other actors, and
a batch whose emit failed, queue them for `notify` (`publish`, `publish_many`). Either way each
event goes to its rooms and again as `notification`, in the replaced Node system's shape
(`csms.realtime.notification`). In production the emits travel through the Socket.IO message queue
(`csms.realtime.BatchedKombuManager`) to every web node; in embedded mode straight to the web
process's own server. Best-effort: a few quick retries, then dropped with a log line; billing and
storage never wait on it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable, Sequence
from typing import Any

import dramatiq
from flask import current_app

from actors import priorities
from csms.broker import is_embedded
from csms.extensions import db, socketio
from csms.fastjson import TextJson
from csms.realtime import CHANNEL, NOTIFICATION, OPERATORS, BatchedKombuManager, device_of, notification
from csms.services import charger_state

log = logging.getLogger(__name__)


@dramatiq.actor(
    queue_name="notifications",
    max_retries=3,
    min_backoff=200,
    max_backoff=2_000,
    time_limit=10_000,
    priority=priorities.LIVE,
)
def notify(events: list) -> None:
    """Emit each `[event, data, rooms]` or `[event, data, rooms, chargerId]` to its rooms (and as
    `notification`)."""
    emit_all(events)


def publish(event: str, data: dict[str, Any], rooms: list[str], charger_id: int | None = None) -> None:
    """Queue an event for `notify`; a failure to queue is logged, never raised. `charger_id`: the
    numeric id of the charger it is about, when its data does not name it (`csms.realtime.device_of`)."""
    publish_many([(event, data, rooms, charger_id)])


def publish_many(events: Sequence[Sequence]) -> None:
    """Queue `(event, data, rooms[, charger_id])` events for `notify` as one message (operators see
    every one)."""
    if not events:
        return
    try:
        notify.send(_to_operators(events))
    except Exception:
        log.exception("could not queue %d notification(s)", len(events))


def emit_committed(events: Sequence[Sequence]) -> None:
    """Emit a committed batch's `(event, data, rooms[, charger_id])` events from the thread that
    committed it, and queue them for `notify` (its quick retries) only if that fails.

    Through `notify` every live event took a second trip through RabbitMQ and waited for a free
    worker thread behind whatever the threads were busy with: seconds in a connect storm, when
    they all apply Boot and StartTransaction batches."""
    if not events:
        return
    try:
        emit_all(_to_operators(events))
    except Exception as exc:
        log.warning("could not emit %d live event(s) (queued for retries): %s", len(events), exc)
        publish_many(events)


def _to_operators(events: Sequence[Sequence]) -> list[list]:
    return [[event, data, [OPERATORS, *rooms], *rest] for event, data, rooms, *rest in events]


def emit_all(events: Iterable[Sequence]) -> None:
    """Emit each `(event, data, rooms[, charger_id])` to its rooms, and again as `notification`; in
    production as one message.

    One emit to all of an event's rooms: a client in several of them (an operator watching a
    charger) gets the event once.
    """
    events = [tuple(event) for event in events]
    identities = _identities(events)
    app = current_app._get_current_object()
    if is_embedded(app):

        def emit(event: str, data: Any, rooms: list[str]) -> None:
            socketio.emit(event, data, to=rooms, namespace="/")

        batch: contextlib.AbstractContextManager = contextlib.nullcontext()
    else:
        manager = _write_only_manager(app.config["RABBITMQ_URL"])
        emit, batch = manager.emit_json, manager.batched()
    with batch:
        for event, data, rooms, *rest in events:
            unique = list(dict.fromkeys(rooms))
            emit(event, data, unique)
            device, charger = device_of(event, data), (rest[0] if rest else None)
            charger = identities.get(device, charger) if charger is None else charger
            device = identities.get(charger, device) if device is None else device
            emit(NOTIFICATION, notification(event, data, charger, device), unique)


def _identities(events: list[tuple]) -> dict:
    """The ids the events' chargers lack, one query for the lot (none when each event that names a
    charger carries both, as the meter values of a batch do): `{chargePointId: pk}` and
    `{pk: chargePointId}` in one dictionary (their types differ)."""
    devices, chargers = set(), set()
    for event, data, _rooms, *rest in events:
        device, charger = device_of(event, data), (rest[0] if rest else None)
        if device is not None and charger is None:
            devices.add(device)
        elif charger is not None and device is None:
            chargers.add(charger)
    if not devices and not chargers:
        return {}
    try:
        found = charger_state.identities(devices, chargers)
    except Exception:  # the events still go out, their notifications without the ids they lack
        log.exception("could not look up the chargers of %d notification(s)", len(events))
        found = []
    finally:
        db.session.rollback()
    return {**{device: pk for pk, device in found}, **dict(found)}


_local = threading.local()


def _write_only_manager(url: str) -> BatchedKombuManager:
    """A worker thread's emitter: publishes to the Socket.IO message queue, listens to nothing.

    One per thread: an AMQP connection must not be shared by threads (py-amqp is not thread-safe; a
    shared one deadlocked worker threads), and a worker has a handful of threads.
    """
    manager = getattr(_local, "manager", None)
    if manager is None:
        manager = _local.manager = BatchedKombuManager(
            url, channel=CHANNEL, write_only=True, connection_options={"connect_timeout": 5}, json=TextJson
        )
    return manager
