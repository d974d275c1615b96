"""The web process's RabbitMQ publisher keeps trying to connect whatever a failed attempt raises."""

from __future__ import annotations

import gevent

from csms.pipeline import publisher as publisher_module
from csms.pipeline.publisher import AmqpPublisher


def test_a_connection_attempt_that_times_out_is_retried(monkeypatch):
    """A wait for RabbitMQ's answer that times out raises gevent.Timeout, which is not an Exception:
    it used to end the publisher's greenlet, and the node then parked every message for ever (seen
    in CI: the outbox never drained once RabbitMQ was back)."""
    publisher = AmqpPublisher("amqp://guest:guest@127.0.0.1:1/%2F", connect_timeout=0.1)
    attempts: list[int] = []

    def connect() -> None:
        attempts.append(1)
        if len(attempts) == 3:
            publisher._stopping = True
        raise gevent.Timeout(0.1)  # what AsyncResult.get(timeout=...) raises

    monkeypatch.setattr(publisher, "_connect", connect)
    monkeypatch.setattr(publisher_module.gevent, "sleep", lambda seconds: None)
    publisher._run()  # returns once stopped, instead of dying on the first timeout
    assert len(attempts) == 3
    assert not publisher.connected.is_set()
