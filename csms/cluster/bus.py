"""This web node's own RabbitMQ queue: calls for the chargers it holds arrive on it, and so do the
answers to the calls it routed to other nodes.

The queue is exclusive and auto-deleted: it lives exactly as long as this process's connection, so a
node that dies takes its queue with it, and a call published to it afterwards comes back unroutable
(`mandatory`) at once instead of waiting for its timeout. Each call carries an expiration of its
timeout, so a call that waited in a busy node's queue longer than its caller is never sent to the
charger. Calls and replies are transient: a call whose node died is answered by its caller's timeout.

Runs on pika's gevent adapter, like the hand-off's publisher (csms.pipeline.publisher), on a
connection of its own so that a burst of hand-offs never delays a reply.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
import pika
from pika.adapters.gevent_connection import GeventConnection

log = logging.getLogger(__name__)

CALL, REPLY = "call", "reply"


class Unreachable(Exception):
    """The call could not be sent: the node it was meant for is gone (`gone`: its queue no longer
    exists, so its chargers are not connected), or this node has no connection to RabbitMQ."""

    def __init__(self, message: str, *, gone: bool = False):
        super().__init__(message)
        self.gone = gone


class Lost(Exception):
    """This node lost its connection to RabbitMQ while the call was on its way: it may or may not
    have reached the charger."""


Reply = Callable[[dict[str, Any]], None]


class NodeBus:
    def __init__(self, url: str, node_id: str, on_call: Callable[[dict[str, Any], Reply], None]):
        self.parameters = pika.URLParameters(url)
        self.parameters.connection_attempts = 1
        self.parameters.socket_timeout = 5.0
        self.queue = f"csms.node.{node_id}.{secrets.token_hex(4)}"
        self.on_call = on_call
        self.connected = gevent.event.Event()
        self.counters = {"calls_sent": 0, "calls_received": 0, "replies_sent": 0, "unroutable": 0}
        self._pending: dict[str, gevent.event.AsyncResult] = {}
        self._connection: GeventConnection | None = None
        self._channel = None
        self._stopping = False
        self._runner: gevent.Greenlet | None = None

    # --- public -------------------------------------------------------------------------------

    def start(self) -> NodeBus:
        self._runner = gevent.spawn(self._run)
        return self

    def stop(self) -> None:
        self._stopping = True
        if self._connection is not None and self._connection.is_open:
            self._connection.close()
        if self._runner is not None:
            self._runner.kill(block=True, timeout=5)

    def request(self, queue: str, body: dict[str, Any], timeout: float) -> gevent.event.AsyncResult:
        """Send a call to another node's `queue`; the result becomes its reply, or `Unreachable`."""
        result = gevent.event.AsyncResult()
        if not self.connected.is_set() or self._channel is None:
            result.set_exception(Unreachable("this node has no connection to RabbitMQ"))
            return result
        correlation_id = secrets.token_hex(8)
        self._pending[correlation_id] = result
        properties = pika.BasicProperties(
            type=CALL,
            correlation_id=correlation_id,
            reply_to=self.queue,
            expiration=str(max(1, int(timeout * 1000))),
            content_type="application/json",
        )
        try:
            self._channel.basic_publish("", queue, json.dumps(body), properties, mandatory=True)
        except Exception as exc:
            self._pending.pop(correlation_id, None)
            result.set_exception(Unreachable(f"publishing failed: {exc}"))
            return result
        self.counters["calls_sent"] += 1
        return result

    def forget(self, result: gevent.event.AsyncResult) -> None:
        """The caller gave up waiting: a late reply is dropped."""
        for correlation_id, pending in list(self._pending.items()):
            if pending is result:
                del self._pending[correlation_id]

    # --- connection ---------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = 0.5
        while not self._stopping:
            lost = gevent.event.Event()
            try:
                self._connect(lost)
            except (Exception, gevent.Timeout) as exc:  # gevent.Timeout is no Exception
                log.warning("cluster bus cannot connect (%s); retrying in %.1fs", exc, backoff)
                self._close_quietly()
                gevent.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            backoff = 0.5
            self.connected.set()
            log.info("cluster bus: consuming %s", self.queue)
            lost.wait()
            self.connected.clear()
            self._close_quietly()
            for result in self._pending.values():
                result.set_exception(Lost("this node lost its connection to RabbitMQ"))
            self._pending.clear()
            if not self._stopping:
                log.warning("cluster bus lost its connection; reconnecting")

    def _connect(self, lost: gevent.event.Event) -> None:
        opened = gevent.event.AsyncResult()
        self._connection = GeventConnection(
            self.parameters,
            on_open_callback=opened.set,
            on_open_error_callback=lambda connection, error: opened.set_exception(
                error if isinstance(error, BaseException) else RuntimeError(str(error))
            ),
            on_close_callback=lambda connection, reason: lost.set(),
        )
        opened.get(timeout=5)
        ready = gevent.event.AsyncResult()
        self._connection.channel(on_open_callback=ready.set)
        channel = ready.get(timeout=5)
        channel.add_on_close_callback(lambda ch, reason: lost.set())
        channel.add_on_return_callback(self._on_return)
        declared = gevent.event.AsyncResult()
        channel.queue_declare(self.queue, exclusive=True, auto_delete=True, callback=declared.set)
        declared.get(timeout=5)
        consuming = gevent.event.AsyncResult()
        channel.basic_consume(self.queue, self._on_message, auto_ack=True, callback=consuming.set)
        consuming.get(timeout=5)
        self._channel = channel

    def _close_quietly(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except Exception:
                log.debug("closing the cluster bus connection failed", exc_info=True)

    # --- messages -----------------------------------------------------------------------------

    def _on_message(self, channel, method, properties, body: bytes) -> None:
        if properties.type == REPLY:
            result = self._pending.pop(properties.correlation_id or "", None)
            if result is not None:
                result.set(json.loads(body))
            return
        if properties.type != CALL or not properties.reply_to:
            log.warning("cluster bus: ignored a message of type %r", properties.type)
            return
        self.counters["calls_received"] += 1
        reply_to, correlation_id = properties.reply_to, properties.correlation_id
        gevent.spawn(
            self.on_call, json.loads(body), lambda answer: self._reply(reply_to, correlation_id, answer)
        )

    def _reply(self, reply_to: str, correlation_id: str | None, answer: dict[str, Any]) -> None:
        if self._channel is None:
            log.info("cluster bus: a reply to %s is lost with the connection", reply_to)
            return
        properties = pika.BasicProperties(
            type=REPLY, correlation_id=correlation_id, content_type="application/json"
        )
        try:
            self._channel.basic_publish("", reply_to, json.dumps(answer), properties)
            self.counters["replies_sent"] += 1
        except Exception as exc:  # the caller's timeout answers for it
            log.warning("cluster bus: replying to %s failed: %s", reply_to, exc)

    def _on_return(self, channel, method, properties, body) -> None:
        if properties.type != CALL:
            return  # a reply whose caller has gone: nobody waits for it
        self.counters["unroutable"] += 1
        result = self._pending.pop(properties.correlation_id or "", None)
        if result is not None:
            result.set_exception(Unreachable("the node holding the charger is gone", gone=True))
