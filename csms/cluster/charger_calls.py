"""Several calls to chargers at once, from wherever the caller runs, for load management
(csms.services.load_management.Calls): each answer, or the exception of its failure, in order.

In the embedded mode the worker runs inside the web process: the gateway sends the calls itself.
A worker process holds no WebSocket: it sends each call to the queue of the node that holds the
charger, as another node does (csms.cluster.node), and reads the replies on RabbitMQ's direct
reply-to, so a site's chargers on several nodes are told at once.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pika
from flask import Flask

from csms.broker import is_embedded
from csms.cluster import bus, presence
from csms.cluster.node import ROUTE_MARGIN, _raise_or_return
from csms.extensions import db
from csms.ocpp import validation
from csms.ocpp.errors import OcppError
from csms.ocpp.session import CallTimeout, NotConnected
from csms.services.load_management import Call, Calls

log = logging.getLogger(__name__)

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"


def for_app(app: Flask) -> Calls:
    """The way this process reaches chargers (kept on the app): its gateway in a web process (which
    routes to other nodes) or the embedded mode; the cluster bus in a worker process."""
    calls = app.extensions.get("charger_calls")
    if calls is None:
        web = is_embedded(app) or app.extensions["ocpp"].node.bus is not None
        calls = GatewayCalls(app) if web else BusCalls(app.config["RABBITMQ_URL"])
        app.extensions["charger_calls"] = calls
    return calls


def _command() -> dict[str, Any]:
    return {"requested_by": None, "requested_at": datetime.now(UTC).isoformat()}


class GatewayCalls:
    """Through this process's gateway, one thread per call."""

    def __init__(self, app: Flask):
        self.app = app

    def __call__(self, calls: list[Call], timeout: float) -> list[Any]:
        gateway = self.app.extensions["ocpp"]
        results: list[Any] = [None] * len(calls)

        def send(index: int, call: Call) -> None:
            try:
                results[index] = gateway.call(call.charge_point_id, call.action, call.payload, timeout)
            except Exception as exc:  # every failure is an answer here: offline, timeout, CALLERROR
                results[index] = exc

        threads = [threading.Thread(target=send, args=item, daemon=True) for item in enumerate(calls)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return results


class BusCalls:
    """Through the cluster bus, from a worker process: one blocking connection per worker thread."""

    def __init__(self, url: str):
        self.parameters = pika.URLParameters(url)
        self.parameters.heartbeat = 0  # idle between reallocations; nothing to keep alive
        self.parameters.socket_timeout = 5.0
        self._local = threading.local()

    def __call__(self, calls: list[Call], timeout: float) -> list[Any]:
        results: list[Any] = [None] * len(calls)
        # On a connection of its own: the caller's session and what it has loaded stay as they are
        # (a rollback of it would expire every row it holds), and no transaction stays open while
        # chargers answer.
        with db.engine.connect() as connection:
            holders = presence.connections(connection, sorted({call.charge_point_id for call in calls}))
        try:
            channel = self._channel()
        except Exception as exc:
            log.warning("load management cannot reach RabbitMQ: %s", exc)
            return [NotConnected(f"no connection to RabbitMQ: {exc}") for _ in calls]
        pending: dict[str, int] = {}
        self._local.results, self._local.pending = results, pending
        for index, call in enumerate(calls):
            holder = holders.get(call.charge_point_id)
            try:
                validation.validate_request(call.action, call.payload)
            except OcppError as exc:
                results[index] = exc
                continue
            if holder is None or holder.queue is None:
                results[index] = NotConnected(call.charge_point_id)
                continue
            correlation_id = secrets.token_hex(8)
            pending[correlation_id] = index
            body = {"chargePointId": call.charge_point_id, "action": call.action, "payload": call.payload}
            body |= {"timeout": timeout, "command": _command()}
            properties = pika.BasicProperties(
                type=bus.CALL,
                correlation_id=correlation_id,
                reply_to=DIRECT_REPLY_TO,
                expiration=str(max(1, int(timeout * 1000))),
                content_type="application/json",
            )
            channel.basic_publish("", holder.queue, json.dumps(body), properties, mandatory=True)
        deadline = time.monotonic() + timeout + ROUTE_MARGIN
        try:
            while pending and time.monotonic() < deadline:
                channel.connection.process_data_events(time_limit=min(0.05, deadline - time.monotonic()))
        except Exception as exc:  # the connection went: what was not answered is unknown
            log.warning("load management lost RabbitMQ while waiting for chargers: %s", exc)
            self._local.channel = None
        for index in pending.values():
            results[index] = CallTimeout(f"{calls[index].charge_point_id} did not answer in time")
        pending.clear()
        return results

    def _channel(self):
        channel = getattr(self._local, "channel", None)
        if channel is not None and channel.is_open:
            return channel
        connection = pika.BlockingConnection(self.parameters)
        channel = connection.channel()
        channel.basic_consume(DIRECT_REPLY_TO, self._on_reply, auto_ack=True)
        channel.add_on_return_callback(self._on_return)
        self._local.channel = channel
        return channel

    def _on_reply(self, channel, method, properties, body: bytes) -> None:
        index = self._local.pending.pop(properties.correlation_id or "", None)
        if index is None:
            return  # the reply to a call given up on
        try:
            self._local.results[index] = _raise_or_return(json.loads(body))
        except Exception as exc:
            self._local.results[index] = exc

    def _on_return(self, channel, method, properties, body: bytes) -> None:
        index = self._local.pending.pop(properties.correlation_id or "", None)
        if index is not None:  # the node's queue is gone, and the charger with it
            self._local.results[index] = NotConnected("the node holding the charger is gone")
