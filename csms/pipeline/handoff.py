"""The hand-off: how the web process gives an event to the actors, and when it may answer.

`submit(actor, item, durable=True)` gives `item` to the actor at that address (see
`csms.pipeline.addresses`), whose one argument is a list of items, and returns only once the item is
safe: confirmed by RabbitMQ, or, when RabbitMQ cannot take it, committed to the outbox table. With
`durable=False` it returns at once and a failed publish is parked in the outbox in the background. It
returns False only when the item could be kept nowhere, and the caller must then not acknowledge what
it received.

In production, items for the same actor that arrive within `HANDOFF_LINGER` share one RabbitMQ
message (at most `HANDOFF_BATCH` of them, or fewer where the address says so): one publish and one
confirm for many chargers' messages, and one database transaction for the worker that applies them.

Embedded mode has no broker to confirm anything, so every message is committed to the outbox first;
a relay feeds the in-process broker and a row is deleted only after its actor finished (or the
message was dead-lettered), so a crash loses nothing: the relay re-sends what is left at start-up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable

import dramatiq
import gevent
import gevent.event
import gevent.queue
from flask import Flask

from csms import metrics
from csms.extensions import db
from csms.pipeline import outbox
from csms.pipeline.addresses import ActorAddress

log = logging.getLogger(__name__)


class Handoff:
    stats: dict[str, int]  # "items" handed off, in how many "batches" (messages)

    def submit(self, actor: ActorAddress, item: dict, *, durable: bool) -> bool:
        raise NotImplementedError

    def start(self) -> None:
        """Start background work (relays, publisher)."""

    def stop(self) -> None:
        """Stop background work."""


def _park_in_own_context(app: Flask, messages: Iterable[dramatiq.Message]) -> bool:
    with app.app_context():
        try:
            outbox.park(messages)
            return True
        except Exception:
            log.exception("could not park messages in the outbox")
            return False
        finally:
            db.session.remove()


class EmbeddedHandoff(Handoff):
    def __init__(self, app: Flask, broker: dramatiq.Broker, *, poll_interval: float = 1.0):
        self.app = app
        self.broker = broker
        self.poll_interval = poll_interval
        self._in_flight: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        # Before Retries, so that its after-hook runs after Retries decided whether the message failed.
        broker.add_middleware(_OutboxAck(self), before=dramatiq.middleware.Retries)
        self.stats = {"items": 0, "batches": 0}

    def submit(self, actor: ActorAddress, item: dict, *, durable: bool) -> bool:
        ok = _park_in_own_context(self.app, [actor.message([item])])
        self.stats["items"] += 1
        self.stats["batches"] += 1
        metrics.HANDOFF_ITEMS.inc()
        metrics.HANDOFF_BATCHES.inc()
        self._wake.set()
        return ok

    def start(self) -> None:
        self._stopped.clear()
        self._thread = threading.Thread(target=self._relay, name="outbox-relay", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _relay(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait(self.poll_interval)
            self._wake.clear()
            try:
                self._relay_once()
            except Exception:
                log.exception("outbox relay pass failed")

    def _relay_once(self) -> None:
        with self.app.app_context():
            try:
                with self._lock:
                    exclude = list(self._in_flight)
                rows = outbox.oldest(500, exclude=exclude) if len(exclude) < 5000 else []
                for row in rows:
                    with self._lock:
                        self._in_flight.add(row.message_id)
                    self.broker.enqueue(dramatiq.Message.decode(row.body))
            finally:
                db.session.remove()

    def done(self, message_id: str) -> None:
        with self.app.app_context():
            try:
                outbox.remove([message_id])
                db.session.commit()
            finally:
                db.session.remove()
        with self._lock:
            self._in_flight.discard(message_id)
        self._wake.set()


class _OutboxAck(dramatiq.Middleware):
    """Deletes a message's outbox row once its actor succeeded or it was dead-lettered; a message
    waiting for a retry keeps its row, so a restart would send it again."""

    def __init__(self, handoff: EmbeddedHandoff):
        self.handoff = handoff

    def after_process_message(self, broker, message, *, result=None, exception=None):
        if exception is None or message.failed:
            self.handoff.done(message.message_id)

    def after_skip_message(self, broker, message):
        self.handoff.done(message.message_id)


class _Batch:
    """Items on their way to one actor in one message; `result` becomes True once they are safe."""

    __slots__ = ("actor", "items", "result", "sealed")

    def __init__(self, actor: ActorAddress) -> None:
        self.actor = actor
        self.items: list[dict] = []
        self.result = gevent.event.AsyncResult()
        self.sealed = False


class BrokerHandoff(Handoff):
    """Production: batch items per actor, publish each batch through the shared `AmqpPublisher`,
    park it in the outbox when RabbitMQ does not confirm it, and relay the outbox back to RabbitMQ
    once it is reachable again."""

    def __init__(
        self,
        app: Flask,
        *,
        confirm_timeout: float = 5.0,
        linger: float = 0.02,
        max_batch: int = 200,
        relay_interval: float = 1.0,
    ):
        from csms.pipeline.publisher import AmqpPublisher

        self.app = app
        self.confirm_timeout = confirm_timeout
        self.linger = linger
        self.max_batch = max_batch
        self.relay_interval = relay_interval
        self.broker = app.extensions["dramatiq"]
        self.publisher = AmqpPublisher(app.config["RABBITMQ_URL"], declare_queues=self._declare_queues)
        self._open: dict[str, _Batch] = {}
        self._due: gevent.queue.Queue[tuple[float, _Batch]] = gevent.queue.Queue()
        self._greenlets: list[gevent.Greenlet] = []
        self.stats = {"items": 0, "batches": 0}

    def _declare_queues(self, channel, timeout: float) -> None:
        """Let the Dramatiq broker declare its queues (same arguments, dead-letter queues included),
        then drop the connection it opened for that."""
        for queue_name in self.broker.get_declared_queues():
            self.broker.declare_queue(queue_name, ensure=True)
        del self.broker.connection

    def start(self) -> None:
        self.publisher.start()
        self._greenlets = [gevent.spawn(self._relay), gevent.spawn(self._flush_when_due)]

    def stop(self) -> None:
        for greenlet in self._greenlets:
            greenlet.kill(block=True, timeout=5)
        self._greenlets = []
        for batch in list(self._open.values()):
            self._seal(batch)
            self._flush(batch)
        self.publisher.stop()

    def submit(self, actor: ActorAddress, item: dict, *, durable: bool) -> bool:
        if not self._greenlets:  # not started (an app outside the web process): nothing flushes later
            batch = _Batch(actor)
            batch.items.append(item)
            self._flush(batch)
            return batch.result.get()
        batch = self._open.get(actor.actor_name)
        if batch is None:
            batch = self._open[actor.actor_name] = _Batch(actor)
            self._due.put((time.monotonic() + self.linger, batch))
        batch.items.append(item)
        if len(batch.items) >= min(actor.max_batch or self.max_batch, self.max_batch):
            self._seal(batch)
            gevent.spawn(self._flush, batch)
        if not durable:
            return True
        return batch.result.get()

    def _seal(self, batch: _Batch) -> bool:
        """Close the batch to new items; False if it was already closed."""
        if batch.sealed:
            return False
        batch.sealed = True
        if self._open.get(batch.actor.actor_name) is batch:
            del self._open[batch.actor.actor_name]
        return True

    def _flush_when_due(self) -> None:
        while True:
            due, batch = self._due.get()
            delay = due - time.monotonic()
            if delay > 0:
                gevent.sleep(delay)
            if self._seal(batch):
                gevent.spawn(self._flush, batch)

    def _flush(self, batch: _Batch) -> None:
        """Publish the batch, or park it; every submitter waiting on it learns the outcome at once
        (and always learns one: an unexpected failure counts as "not kept")."""
        try:
            safe = self._publish_or_park(batch)
        except Exception:
            log.exception("handing off %d item(s) for %s failed", len(batch.items), batch.actor.actor_name)
            safe = False
        batch.result.set(safe)

    def _publish_or_park(self, batch: _Batch) -> bool:
        message = batch.actor.message(batch.items)
        self.stats["items"] += len(batch.items)
        self.stats["batches"] += 1
        metrics.HANDOFF_ITEMS.inc(len(batch.items))
        metrics.HANDOFF_BATCHES.inc()
        result = self.publisher.publish(message.queue_name, message.encode(), message.message_id)
        try:
            if result.get(timeout=self.confirm_timeout):
                return True
        except gevent.Timeout:
            pass
        if _park_in_own_context(self.app, [message]):
            return True
        name = batch.actor.actor_name
        log.error("%d item(s) for %s could be neither published nor parked", len(batch.items), name)
        return False

    def _relay(self) -> None:
        while True:
            self.publisher.connected.wait()
            try:
                moved = self._relay_once()
            except Exception:
                log.exception("outbox relay pass failed")
                moved = 0
            if not moved:
                gevent.sleep(self.relay_interval)

    def _relay_once(self) -> int:
        with self.app.app_context():
            try:
                rows = outbox.oldest(500, lock=True)
                if not rows:
                    db.session.rollback()
                    return 0
                pending = [
                    (row.message_id, self.publisher.publish(row.queue_name, row.body, row.message_id))
                    for row in rows
                ]
                confirmed = []
                for message_id, result in pending:
                    try:
                        if result.get(timeout=self.confirm_timeout * 2):
                            confirmed.append(message_id)
                    except gevent.Timeout:
                        pass
                outbox.remove(confirmed)
                db.session.commit()
                if confirmed:
                    log.info("relayed %d parked message(s) to RabbitMQ", len(confirmed))
                return len(confirmed) if len(confirmed) == len(rows) else 0
            finally:
                db.session.remove()


def build_handoff(app: Flask) -> Handoff:
    if app.config.get("RABBITMQ_URL"):
        return BrokerHandoff(
            app,
            confirm_timeout=app.config["CONFIRM_TIMEOUT"],
            linger=app.config["HANDOFF_LINGER"],
            max_batch=app.config["HANDOFF_BATCH"],
        )
    return EmbeddedHandoff(app, app.extensions["dramatiq"])
