"""What a serving web process runs besides answering requests: the hand-off's publisher and relay,
the dashboards' presence feed, and in embedded mode the in-process Dramatiq worker."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask

from csms.broker import InProcessWorker, is_embedded
from csms.dashboard.presence import PresenceFeed
from csms.ocpp import validation
from csms.pipeline.addresses import RELAY_EVENTS
from csms.services import events


def start_background(app: Flask) -> Callable[[], None]:
    """Start everything; returns the function that stops it again."""
    validation.warm_up()
    worker = None
    if is_embedded(app) and app.config["INPROCESS_WORKER"]:
        worker = InProcessWorker(app).start()
    gateway = app.extensions["ocpp"]
    if not is_embedded(app):
        # An event emitted here (a top-up) kicks the relay through the hand-off: a greenlet must
        # not publish on its own (DESIGN: Dramatiq's RabbitMQ broker opens a connection per greenlet).
        events.after_commit_hook = lambda: gateway.handoff.submit(RELAY_EVENTS, {}, durable=False)
    gateway.handoff.start()
    gateway.start()
    presence = PresenceFeed(app).start()

    def stop() -> None:
        presence.stop()
        gateway.stop()
        gateway.handoff.stop()
        if worker is not None:
            worker.stop()

    return stop
