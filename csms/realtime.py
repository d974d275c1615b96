"""Live events for dashboards and apps over Socket.IO: the web side.

Clients join rooms: `operators` (every event), `customer:<id>` (that customer's sessions) and
`charger:<id>`. Actors publish events through the `notifications` queue and its actor emits them to
their rooms (`actors.notifications`), in production through the message queue this module's manager
listens to. Emits are best-effort: nothing of value depends on them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import socketio as python_socketio
from flask import Flask, current_app
from flask_socketio import ConnectionRefusedError, join_room

from csms import metrics
from csms.broker import is_embedded
from csms.cors import parse_origins, socketio_origins
from csms.extensions import db, socketio
from csms.fastjson import TextJson
from csms.services import tokens, users
from csms.services.errors import ServiceError

log = logging.getLogger(__name__)

OPERATORS = "operators"
# The message-queue channel shared by the web process's Socket.IO server and the workers' emitters.
CHANNEL = "csms-socketio"


# Every event goes out a second time as `notification`, in the shape of the Node system this CSMS
# replaces, whose dashboards listen to it: `{type, chargerId, deviceId, data, timestamp}`, `type`
# dotted as it named its events. The named event's own payload is the `data`.
NOTIFICATION = "notification"
_NOTIFICATION_TYPES = {"meter:values": "meter.values.updated"}


def notification_type(event: str, data: dict[str, Any]) -> str:
    """`charging:started` → `charging.started`; `meter:values` → `meter.values.updated` (the replaced
    system's name); a CMS change by what changed (`cms.station.updated`)."""
    if event == "cms:changed" and isinstance(data.get("type"), str):
        return data["type"]
    return _NOTIFICATION_TYPES.get(event) or event.replace(":", ".")


def device_of(event: str, data: dict[str, Any]) -> str | None:
    """The chargePointId an event is about, when it is about one charger."""
    if event == "cms:changed":
        return data.get("entity_id") if data.get("entity_type") == "point" else None
    device = data.get("chargePointId")
    return device if isinstance(device, str) else None


def notification(event: str, data: dict[str, Any], charger_id: int | None, device_id: str | None) -> dict:
    """The `notification` of an event: `chargerId` is the charger's numeric id, `deviceId` its
    chargePointId (both null for an event about no single charger), `timestamp` when it is emitted,
    ISO 8601 UTC as the replaced system wrote it (`2026-01-31T12:00:00.000Z`)."""
    return {
        "type": notification_type(event, data),
        "chargerId": charger_id,
        "deviceId": device_id,
        "data": data,
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }


def customer_room(user_id: int) -> str:
    return f"customer:{user_id}"


def charger_room(charge_point_id: str) -> str:
    return f"charger:{charge_point_id}"


class BatchedKombuManager(python_socketio.KombuManager):
    """The Socket.IO message queue, carrying many emits in one message.

    python-socketio publishes every emit as its own AMQP message, synchronously: a worker applying a
    batch of 200 MeterValues published 400 (each event also goes out as `notification`), a large
    share of its time (bench/README.md). Inside `batched()`, the messages python-socketio builds are
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
        scan of the data for binary parts (they are JSON; the scan was a worker's hot spot)
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


def on_connect(auth: Any) -> None:
    """A client must present its bearer token (`auth={"token": ...}`). Operators join `operators` and
    see everything; a customer joins only their own room."""
    token = auth.get("token") if isinstance(auth, dict) else None
    if not token:
        raise ConnectionRefusedError("token required")
    try:
        identity = tokens.verify(token, current_app.config["SECRET_KEY"])
        identity = tokens.Identity(identity.user_id, users.active(identity.user_id).role)
    except ServiceError as exc:  # an invalid token, or one of a disabled or deleted account
        raise ConnectionRefusedError(exc.message) from None
    finally:
        db.session.remove()
    join_room(OPERATORS if identity.role == "operator" else customer_room(identity.user_id))
    metrics.SOCKETIO_CLIENTS.inc()


def on_disconnect(*_args: Any) -> None:
    """Only clients that were let in are counted (a refused connect raises before counting)."""
    metrics.SOCKETIO_CLIENTS.dec()


# A web node's own queue of live events outlives the node by this long (python-socketio's default
# is five minutes). Every event of the network is copied to it until then: a node restarted in a
# deploy left a queue taking a thousand or more messages a second that nobody would read. A node
# back within 30 s finds its queue again; one back later declares a new one (live events are
# best-effort).
NODE_QUEUE_OPTIONS = {"queue_arguments": {"x-expires": 30_000}}


def init_app(app: Flask, async_mode: str) -> None:
    """The web process's Socket.IO server, fed by the message queue in production mode."""
    manager = (
        None
        if is_embedded(app)
        else BatchedKombuManager(
            app.config["RABBITMQ_URL"], channel=CHANNEL, json=TextJson, queue_options=NODE_QUEUE_OPTIONS
        )
    )
    origins = socketio_origins(parse_origins(app.config["CORS_ORIGINS"]))
    socketio.init_app(app, async_mode=async_mode, client_manager=manager, cors_allowed_origins=origins)
    socketio.on_event("connect", on_connect)
    socketio.on_event("disconnect", on_disconnect)
