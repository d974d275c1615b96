"""Publishing integration events to RabbitMQ's durable topic exchange `events_exchange`.

Third parties bind their own durable queues to it with routing-key patterns (`notification.#`); the
CSMS declares only the exchange, so an event with no bound queue is simply not kept. Each worker
thread has its own connection (pika's are not thread-safe). A batch is published in one AMQP
transaction: RabbitMQ has taken every message once `tx_commit` returns, one round trip per batch
(pika's blocking publisher confirms would wait for each message in turn), and only then are the
events marked published.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

import pika

from csms.models import IntegrationEvent
from csms.services.events import EXCHANGE

log = logging.getLogger(__name__)


class EventsExchange:
    def __init__(self, url: str) -> None:
        self.parameters = pika.URLParameters(url)
        # A blocking connection answers heartbeats only while it is used: idle for two of them (two
        # minutes without events, as while a fleet boots), RabbitMQ closed it, and the next batch of
        # every worker thread failed with "Connection reset by peer" before its retry went through.
        # The socket timeout finds a dead broker when a batch is published.
        self.parameters.heartbeat = 0
        self.parameters.socket_timeout = 5
        self.parameters.blocked_connection_timeout = 10
        self._local = threading.local()

    def publish(self, events: Iterable[IntegrationEvent]) -> None:
        """Publish the events, persistent, in one transaction; raises if RabbitMQ refused or is away
        (the caller keeps them unpublished and tries again)."""
        channel = self._channel()
        try:
            for event in events:
                channel.basic_publish(
                    EXCHANGE,
                    event.routing_key,
                    event.body.encode(),
                    pika.BasicProperties(
                        content_type="application/json",
                        delivery_mode=pika.DeliveryMode.Persistent,
                        message_id=event.event_id,
                        type=event.routing_key,
                    ),
                )
            channel.tx_commit()
        except Exception:
            self._drop()
            raise

    def _channel(self):
        channel = getattr(self._local, "channel", None)
        if channel is None or channel.is_closed:
            self._drop()
            connection = pika.BlockingConnection(self.parameters)
            channel = connection.channel()
            channel.exchange_declare(EXCHANGE, exchange_type="topic", durable=True)
            channel.tx_select()
            self._local.connection, self._local.channel = connection, channel
        return channel

    def _drop(self) -> None:
        connection = getattr(self._local, "connection", None)
        self._local.connection = self._local.channel = None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except Exception:
                log.debug("closing the events connection failed", exc_info=True)
