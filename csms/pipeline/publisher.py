"""One AMQP connection for the whole web process, publishing with batched publisher confirms.

Connection greenlets never talk to RabbitMQ themselves (with 10,000 chargers that would be 10,000
connections): they hand messages to this publisher and, when the message must be durable before the
charger is answered, wait for its confirm. Messages go out as soon as they arrive; RabbitMQ acks
them in batches (`multiple=True`), so one fsync on the broker side confirms many at once.

Built on pika's gevent adapter: its I/O runs on the gevent hub, so the web process needs no thread.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import gevent
import gevent.event
import gevent.queue
import pika
from pika.adapters.gevent_connection import GeventConnection

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Publish:
    queue_name: str
    body: bytes
    message_id: str
    result: gevent.event.AsyncResult = field(default_factory=gevent.event.AsyncResult)
    returned: bool = False


class AmqpPublisher:
    """Publishes to durable queues the Dramatiq broker declares; `publish()` returns an AsyncResult
    that becomes True once RabbitMQ confirmed the message, False if it could not be delivered."""

    def __init__(self, url: str, *, declare_queues=None, window: int = 5000, connect_timeout: float = 5.0):
        self.parameters = pika.URLParameters(url)
        self.parameters.connection_attempts = 1
        self.parameters.socket_timeout = connect_timeout
        self.declare_queues = declare_queues  # callable, run once connected (see Handoff)
        self.window = window
        self.connect_timeout = connect_timeout
        self.connected = gevent.event.Event()
        self.stats = {"published": 0, "confirmed": 0, "failed": 0, "connections": 0}
        self._requests: gevent.queue.Queue[_Publish] = gevent.queue.Queue()
        self._unconfirmed: dict[int, _Publish] = {}
        self._by_message_id: dict[str, _Publish] = {}
        self._delivery_tag = 0
        self._connection: GeventConnection | None = None
        self._channel = None
        self._lost = gevent.event.Event()
        self._window_open = gevent.event.Event()
        self._window_open.set()
        self._runner: gevent.Greenlet | None = None
        self._stopping = False

    # --- public -------------------------------------------------------------------------------

    def start(self) -> AmqpPublisher:
        self._runner = gevent.spawn(self._run)
        return self

    def stop(self) -> None:
        self._stopping = True
        if self._connection is not None and self._connection.is_open:
            self._connection.close()
        if self._runner is not None:
            self._runner.kill(block=True, timeout=5)
        self._fail_unconfirmed()

    def publish(self, queue_name: str, body: bytes, message_id: str) -> gevent.event.AsyncResult:
        request = _Publish(queue_name, body, message_id)
        if not self.connected.is_set():
            request.result.set(False)
        else:
            self._requests.put(request)
        return request.result

    # --- connection lifecycle -----------------------------------------------------------------

    def _run(self) -> None:
        backoff = 0.5
        while not self._stopping:
            try:
                self._connect()
            # Any failure to connect: retry with backoff. A wait that timed out raises gevent.Timeout,
            # a BaseException: uncaught it ended this greenlet, and the node never published again.
            except (Exception, gevent.Timeout) as exc:
                log.warning("RabbitMQ publisher cannot connect (%s); retrying in %.1fs", exc, backoff)
                self._close_quietly()
                gevent.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            backoff = 0.5
            log.info("RabbitMQ publisher connected")
            self.connected.set()
            try:
                self._pump()
            finally:
                self.connected.clear()
                self._fail_unconfirmed()
                self._fail_queued()
                self._close_quietly()
            if not self._stopping:
                log.warning("RabbitMQ publisher lost its connection; reconnecting")

    def _connect(self) -> None:
        self._lost.clear()
        opened = gevent.event.AsyncResult()
        self._connection = GeventConnection(
            self.parameters,
            on_open_callback=lambda connection: opened.set(connection),
            on_open_error_callback=lambda connection, error: opened.set_exception(
                error if isinstance(error, BaseException) else RuntimeError(str(error))
            ),
            on_close_callback=lambda connection, reason: self._lost.set(),
        )
        self.stats["connections"] += 1
        opened.get(timeout=self.connect_timeout)
        channel_ready = gevent.event.AsyncResult()
        self._connection.channel(on_open_callback=channel_ready.set)
        channel = channel_ready.get(timeout=self.connect_timeout)
        channel.add_on_close_callback(lambda ch, reason: self._lost.set())
        channel.add_on_return_callback(self._on_return)
        confirming = gevent.event.AsyncResult()
        channel.confirm_delivery(
            ack_nack_callback=self._on_confirm, callback=lambda frame: confirming.set(True)
        )
        confirming.get(timeout=self.connect_timeout)
        self._channel = channel
        self._delivery_tag = 0
        if self.declare_queues is not None:
            self.declare_queues(channel, self.connect_timeout)

    def _close_quietly(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except Exception:
                log.debug("closing the publisher connection failed", exc_info=True)

    # --- publishing ---------------------------------------------------------------------------

    def _pump(self) -> None:
        while not self._lost.is_set() and not self._stopping:
            self._window_open.wait()
            try:
                request = self._requests.get(timeout=0.5)
            except gevent.queue.Empty:
                continue
            if self._lost.is_set():
                request.result.set(False)
                break
            self._send(request)

    def _send(self, request: _Publish) -> None:
        try:
            self._channel.basic_publish(
                exchange="",
                routing_key=request.queue_name,
                body=request.body,
                properties=pika.BasicProperties(delivery_mode=2, message_id=request.message_id),
                mandatory=True,
            )
        except Exception as exc:  # channel closed underneath us
            log.warning("publish failed: %s", exc)
            request.result.set(False)
            self._lost.set()
            return
        self._delivery_tag += 1
        self._unconfirmed[self._delivery_tag] = request
        self._by_message_id[request.message_id] = request
        self.stats["published"] += 1
        if len(self._unconfirmed) >= self.window:
            self._window_open.clear()

    def _on_return(self, channel, method, properties, body) -> None:
        # An unroutable message (its queue is gone) is returned before its ack: the ack must not count.
        request = self._by_message_id.get(properties.message_id or "")
        if request is not None:
            request.returned = True
            log.error("RabbitMQ returned message %s: %s", properties.message_id, method.reply_text)

    def _on_confirm(self, frame) -> None:
        method = frame.method
        acked = isinstance(method, pika.spec.Basic.Ack)
        if method.multiple:  # tags are sequential and the dict keeps them in order: pop from the front
            tags = []
            for tag in self._unconfirmed:
                if tag > method.delivery_tag:
                    break
                tags.append(tag)
        else:
            tags = [method.delivery_tag] if method.delivery_tag in self._unconfirmed else []
        for tag in tags:
            request = self._unconfirmed.pop(tag)
            self._by_message_id.pop(request.message_id, None)
            ok = acked and not request.returned
            self.stats["confirmed" if ok else "failed"] += 1
            request.result.set(ok)
        if len(self._unconfirmed) < self.window:
            self._window_open.set()

    def _fail_unconfirmed(self) -> None:
        pending, self._unconfirmed = self._unconfirmed, {}
        self._by_message_id.clear()
        for request in pending.values():
            self.stats["failed"] += 1
            request.result.set(False)
        self._window_open.set()

    def _fail_queued(self) -> None:
        while True:
            try:
                request = self._requests.get_nowait()
            except gevent.queue.Empty:
                return
            request.result.set(False)
