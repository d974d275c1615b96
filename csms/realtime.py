"""Live events for dashboards and apps over Socket.IO.

Actors publish through the `notifications` queue; its actor emits to rooms: `operators` (every
event), `customer:<id>` (that customer's sessions) and `charger:<id>`. Each event also goes out as
`notification` with its name, so a client can listen to one stream. Emits are best-effort: nothing
of value depends on them.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import socketio as python_socketio
from flask import Flask, current_app
from flask_socketio import ConnectionRefusedError, join_room

from csms.broker import is_embedded
from csms.extensions import socketio
from csms.fastjson import TextJson
from csms.services import tokens

log = logging.getLogger(__name__)

OPERATORS = "operators"
# The message-queue channel shared by the web process's Socket.IO server and the workers' emitters.
CHANNEL = "csms-socketio"


def customer_room(user_id: int) -> str:
    return f"customer:{user_id}"


def charger_room(charge_point_id: str) -> str:
    return f"charger:{charge_point_id}"


class BatchedKombuManager(python_socketio.KombuManager):
    """The Socket.IO message queue, carrying many emits in one message.

    python-socketio publishes every emit as its own AMQP message, synchronously: a worker applying a
    batch of 200 MeterValues published 400 (each event also goes out as `notification`) and spent
    about 40 % of its time doing so. Inside `batched()`, the messages python-socketio builds are
    collected and published as one; the web process's manager unpacks it into those messages.
    """

    _collected: list[dict] | None = None

    @contextlib.contextmanager
    def batched(self) -> Iterator[None]:
        self._collected = []
        try:
            yield
        finally:
            collected, self._collected = self._collected, None
        if collected:
            super()._publish({"method": "emit_many", "emits": collected, "host_id": self.host_id})

    def emit_json(self, event: str, data: Any, rooms: list[str]) -> None:
        """Emit `data` to `rooms` as `emit` does, less two steps a worker's events do not need: the
        scan of the data for binary parts (they are JSON; the scan took a tenth of a worker's CPU)
        and the delivery to this host's own clients (a worker has none)."""
        self._publish(
            {
                "method": "emit",
                "event": event,
                "data": [data],
                "binary": False,
                "namespace": "/",
                "room": rooms,
                "skip_sid": None,
                "callback": None,
                "host_id": self.host_id,
            }
        )

    def _publish(self, data: dict) -> None:
        if self._collected is None:
            super()._publish(data)
        else:
            self._collected.append(data)

    def _listen(self):
        for message in super()._listen():
            try:
                data = self.json.loads(message) if isinstance(message, str | bytes) else message
            except ValueError:
                data = None
            if isinstance(data, dict) and data.get("method") == "emit_many":
                yield from data.get("emits") or ()
            else:
                yield message


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


def emit_all(events: Iterable[Sequence]) -> None:
    """Emit each `(event, data, rooms)` to its rooms, and again as `notification`; in production as
    one message.

    One emit to all of an event's rooms: a client in several of them (an operator watching a
    charger) gets the event once.
    """
    app = current_app._get_current_object()
    if is_embedded(app):

        def emit(event: str, data: Any, rooms: list[str]) -> None:
            socketio.emit(event, data, to=rooms, namespace="/")

        batch: contextlib.AbstractContextManager = contextlib.nullcontext()
    else:
        manager = _write_only_manager(app.config["RABBITMQ_URL"])
        emit, batch = manager.emit_json, manager.batched()
    with batch:
        for event, data, rooms in events:
            unique = list(dict.fromkeys(rooms))
            emit(event, data, unique)
            emit("notification", {"event": event, "data": data}, unique)


def publish(event: str, data: dict[str, Any], rooms: list[str]) -> None:
    """Queue an event for the `notifications` actor; a failure to queue is logged, never raised."""
    publish_many([(event, data, rooms)])


def publish_many(events: list[tuple[str, dict[str, Any], list[str]]]) -> None:
    """Queue events for the `notifications` actor as one message (operators see every one)."""
    from actors.notifications import notify

    if not events:
        return
    try:
        notify.send([[event, data, [OPERATORS, *rooms]] for event, data, rooms in events])
    except Exception:
        log.exception("could not queue %d notification(s)", len(events))


def on_connect(auth: Any) -> None:
    """A client must present its bearer token (`auth={"token": ...}`). Operators join `operators` and
    see everything; a customer joins only their own room."""
    token = auth.get("token") if isinstance(auth, dict) else None
    if not token:
        raise ConnectionRefusedError("token required")
    try:
        identity = tokens.verify(token, current_app.config["SECRET_KEY"])
    except tokens.InvalidToken as exc:
        raise ConnectionRefusedError(exc.message) from None
    join_room(OPERATORS if identity.role == "operator" else customer_room(identity.user_id))


def init_app(app: Flask, async_mode: str) -> None:
    """The web process's Socket.IO server, fed by the message queue in production mode."""
    manager = (
        None
        if is_embedded(app)
        else BatchedKombuManager(app.config["RABBITMQ_URL"], channel=CHANNEL, json=TextJson)
    )
    socketio.init_app(app, async_mode=async_mode, client_manager=manager)
    socketio.on_event("connect", on_connect)
