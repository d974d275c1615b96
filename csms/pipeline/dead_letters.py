"""How many messages each queue's dead-letter queue (`<queue>.XQ`) holds.

A dead-lettered message is an exchange a charger was answered for and that was never applied, or a
session never billed: not a normal path but an alarm. `/healthz` reports the depths and the web
process logs an error whenever they grow; the worker logs each message it dead-letters, with its
last error (`csms.broker.DeadLetterLog`).

The depths do not make `/healthz` answer 503: the dead-letter queues are shared by every node, so
one poison message would take the whole fleet out of its load balancer, while each node can still
serve chargers and customers. Alert on the number instead.
"""

from __future__ import annotations

import logging
import threading
import time

import dramatiq
import pika
from dramatiq.common import dq_name, xq_name
from flask import Flask
from pika.exceptions import ChannelClosedByBroker

from csms.broker import QUEUES, get_app_broker, is_embedded

log = logging.getLogger(__name__)


class DeadLetterProbe:
    """RabbitMQ's count of messages in each dead-letter queue (a passive declare each, over one
    short connection), at most once per `ttl` seconds, like `csms.broker.BrokerProbe`."""

    def __init__(self, url: str, ttl: float, queues: tuple[str, ...] = QUEUES) -> None:
        self.queues = queues
        self.parameters = pika.URLParameters(url)
        self.parameters.socket_timeout = 2
        self.parameters.blocked_connection_timeout = 2
        self.parameters.connection_attempts = 1
        self.ttl = ttl
        self._checked_at = -float("inf")
        self._depths: dict[str, int] | None = None
        self._lock = threading.Lock()

    def depths(self) -> dict[str, int] | None:
        """Messages per queue's dead-letter queue; None when RabbitMQ cannot be asked."""
        with self._lock:
            now = time.monotonic()
            if now - self._checked_at >= self.ttl:
                depths = self._check()
                warn_if_grown(self._depths, depths)
                self._depths, self._checked_at = depths, now
            return self._depths

    def _check(self) -> dict[str, int] | None:
        try:
            connection = pika.BlockingConnection(self.parameters)
        except Exception as exc:  # the broker check reports the outage
            log.debug("dead-letter check: RabbitMQ unreachable: %s", exc)
            return None
        try:
            depths = {}
            channel = connection.channel()
            for queue in self.queues:
                try:
                    declared = channel.queue_declare(xq_name(queue), passive=True)
                    depths[queue] = declared.method.message_count
                except ChannelClosedByBroker:  # never declared: no worker has consumed it yet
                    depths[queue] = 0
                    channel = connection.channel()
            return depths
        except Exception as exc:
            log.warning("dead-letter check failed: %s", exc)
            return None
        finally:
            try:
                connection.close()
            except Exception:
                log.debug("closing the dead-letter probe connection failed", exc_info=True)


def embedded_depths(broker: dramatiq.Broker) -> dict[str, int]:
    """The in-process broker's dead letters per queue (a retried message fails from its delay queue)."""
    letters = getattr(broker, "dead_letters_by_queue", {})
    return {queue: len(letters.get(queue, ())) + len(letters.get(dq_name(queue), ())) for queue in QUEUES}


def warn_if_grown(before: dict[str, int] | None, after: dict[str, int] | None) -> None:
    if not after:
        return
    grown = {queue: depth for queue, depth in after.items() if depth > (before or {}).get(queue, 0)}
    if grown:
        log.error("dead-letter queues hold unapplied messages: %s", after)


def current_depths(app: Flask) -> dict[str, int] | None:
    """Messages per queue that failed every retry (None: RabbitMQ cannot be asked), for `/healthz`
    and the dashboard's alerts; an error is logged when a depth grew."""
    if is_embedded(app):
        depths = embedded_depths(get_app_broker(app))
        warn_if_grown(app.extensions.get("dead_letter_depths"), depths)
        app.extensions["dead_letter_depths"] = depths
        return depths
    probe = app.extensions.get("dead_letter_probe")
    if probe is None:
        probe = app.extensions["dead_letter_probe"] = DeadLetterProbe(
            app.config["RABBITMQ_URL"], app.config["HEALTH_CACHE_SECONDS"]
        )
    return probe.depths()
