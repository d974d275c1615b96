"""The one place the Dramatiq broker is chosen: RabbitMQ in production, in-process in embedded mode.

`init_app` installs the broker the configuration asks for as Dramatiq's global broker, with the
app-context middleware. Actors are declared on whatever broker is global when their module is first
imported, so whoever runs them binds them to the app's broker: the worker's entry module
(`csms.worker`) builds the app before `dramatiq` imports `actors`, and the embedded mode's in-process
worker calls `bind_actors`. The web side itself never imports an actor module: it addresses actors by
queue and name (`csms.pipeline.addresses`). Until an app exists the global broker is an in-process one,
so importing an actor module connects to nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

import dramatiq
import pika
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import q_name
from dramatiq.middleware import Middleware
from flask import Flask

from csms.fastjson import DramatiqEncoder
from csms.pipeline.addresses import NOTIFY
from csms.pipeline.last_seen import LastSeenFlusher
from csms.services import events

log = logging.getLogger(__name__)

# One queue per concern; the names are part of the operations contract (README: "Production mode").
QUEUES = (
    "ocpp_messages",
    "metering",
    "transactions",
    "billing",
    "commands",
    "cms_events",
    "notifications",
    "integration_events",  # the relay of integration events (actors.integration)
    "webhooks",  # webhook deliveries, apart so that a slow endpoint holds back nothing else
    "smart_charging",
)


class UnchosenBroker(StubBroker):
    """Dramatiq's global broker until an app installs the configured one. Actors declare themselves
    on it when imported; a worker booted on it was started without the entry module (`dramatiq
    actors`, the command before `csms.worker`) and would sit idle while the queues fill, so it
    refuses to boot, saying which command to run."""

    def emit_after(self, signal: str, *args: Any, **kwargs: Any) -> None:
        if signal == "process_boot":
            raise ImportError("no broker was chosen: start workers with `dramatiq csms.worker actors`")
        super().emit_after(signal, *args, **kwargs)


dramatiq.set_broker(UnchosenBroker())
dramatiq.set_encoder(DramatiqEncoder())


class AppContextMiddleware(Middleware):
    """Runs every message inside an app context and ends its database session afterwards, so no
    session (and no transaction) leaks from one message into the next on the same worker thread."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._local = threading.local()

    def before_process_message(self, broker: dramatiq.Broker, message: dramatiq.Message) -> None:
        ctx = self.app.app_context()
        ctx.push()
        self._local.ctx = ctx

    def after_process_message(
        self, broker: dramatiq.Broker, message: dramatiq.Message, *, result: Any = None, exception=None
    ) -> None:
        ctx = getattr(self._local, "ctx", None)
        if ctx is None:
            return
        from csms.extensions import db

        try:
            db.session.remove()
        finally:
            self._local.ctx = None
            ctx.pop()

    after_skip_message = after_process_message


class DeadLetterLog(Middleware):
    """Says why a message went to its queue's dead-letter queue (`<queue>.XQ`): its retries and the
    last error, so operators can tell a poison message from an outage. Operators' dashboards hear of
    it as `error:occurred` (`notification` type `error.occurred`), except of a dead-lettered
    notification itself, which would only make another."""

    def after_nack(self, broker: dramatiq.Broker, message: dramatiq.Message) -> None:
        last_error = (message.options.get("traceback") or "").strip().splitlines()[-1:] or ["unknown"]
        log.error(
            "dead-lettered %s (%s on %s) after %s failed attempts: %s",
            message.message_id,
            message.actor_name,
            message.queue_name,
            message.options.get("retries", 0),
            last_error[0],
        )
        if message.actor_name == NOTIFY.actor_name:
            return
        from csms.realtime import OPERATORS  # csms.realtime chooses its manager by this module

        event = ["error:occurred", dead_letter_event(message, last_error[0]), [OPERATORS]]
        try:
            broker.enqueue(NOTIFY.message([event]))
        except Exception:  # best-effort like every live event: the log line above stays
            log.exception("could not tell operators of dead-lettered %s", message.message_id)


def dead_letter_event(message: dramatiq.Message, error: str) -> dict[str, Any]:
    """The `error:occurred` event of a dead-lettered message, naming the charger whose exchanges it
    carried when they were one charger's (a batch that failed is retried one exchange at a time)."""
    exchanges = message.args[0] if message.args and isinstance(message.args[0], list) else []
    chargers = {e.get("charge_point_id") for e in exchanges if isinstance(e, dict)}
    return {
        "source": "pipeline",
        "messageId": message.message_id,
        "queue": q_name(message.queue_name),  # a retried message comes from the delay queue
        "actor": message.actor_name,
        "retries": message.options.get("retries", 0),
        "error": error,
        "chargePointId": chargers.pop() if len(chargers) == 1 else None,
    }


class EventsSweep(Middleware):
    """Each worker kicks the integration-event relay every `interval` seconds, so events whose
    after-commit kick was lost (RabbitMQ away at that moment) and deliveries whose message was lost
    still leave (`actors.integration.relay_events`)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._stopped = threading.Event()

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stopped.clear()
        threading.Thread(target=self._run, args=(broker,), name="events-sweep", daemon=True).start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stopped.set()

    def _run(self, broker: dramatiq.Broker) -> None:
        while not self._stopped.wait(self.interval):
            kick_relay(broker, SWEEP)


SWEEP = "sweep"  # a relay run that also resends lost deliveries and forgets old events


def kick_relay(broker: dramatiq.Broker, *kicks: str, delay_ms: int | None = None) -> None:
    """Ask for a run of the integration-event relay; a failure is logged (the sweep retries)."""
    from csms.pipeline.addresses import RELAY_EVENTS

    message = RELAY_EVENTS.message(list(kicks))
    try:
        broker.enqueue(message, delay=delay_ms)
    except Exception as exc:
        log.warning("could not kick the integration-event relay: %s", exc)


class RelayKicks:
    """After-commit kicks of the relay, at most about two per `window` per process: a commit's
    kick goes at once unless one went less than `window` ago; then one kick is scheduled for the
    end of that window (and serves every commit until it fires). Either way a relay run starts
    after every commit that emitted events, without one run per committed batch."""

    def __init__(self, broker: dramatiq.Broker, window: float = 0.25) -> None:
        self.broker = broker
        self.window = window
        self._free_at = 0.0  # when the next immediate kick may go
        self._scheduled_at = 0.0  # when the scheduled kick fires
        self._lock = threading.Lock()

    def __call__(self) -> None:
        now = time.monotonic()
        with self._lock:
            if now >= self._free_at:
                self._free_at, delay = now + self.window, None
            elif self._scheduled_at > now:
                return
            else:
                self._scheduled_at = self._free_at
                delay = self._free_at - now
                self._free_at += self.window
        kick_relay(self.broker, delay_ms=None if delay is None else max(round(delay * 1000), 1))


def build_broker(config: dict[str, Any]) -> dramatiq.Broker:
    """RabbitMQ (with publisher confirms) when `RABBITMQ_URL` is set, otherwise the in-process broker."""
    url = config.get("RABBITMQ_URL")
    if url:
        return RabbitmqBroker(url=url, confirm_delivery=True)
    return StubBroker(fail_fast_default=False)


def init_app(app: Flask) -> dramatiq.Broker:
    """Install the configured broker globally; actors already declared (tests build many apps in one
    process) move onto it."""
    previous = dramatiq.get_broker()
    broker = build_broker(app.config)
    broker.add_middleware(AppContextMiddleware(app))
    broker.add_middleware(DeadLetterLog())
    broker.add_middleware(EventsSweep(app.config["EVENTS_SWEEP_INTERVAL"]))
    broker.add_middleware(LastSeenFlusher(app))
    dramatiq.set_broker(broker)
    events.after_commit_hook = RelayKicks(broker)
    _move_actors(previous.actors.values(), broker)
    for queue in QUEUES:
        broker.declare_queue(queue)
    app.extensions["dramatiq"] = broker
    return broker


def bind_actors(broker: dramatiq.Broker) -> None:
    """Import every actor and declare it on `broker`, for a process that runs them."""
    import actors  # noqa: F401  (declares each actor on the global broker)

    _move_actors(dramatiq.get_broker().actors.values(), broker)


def _move_actors(declared: Iterable[dramatiq.Actor], broker: dramatiq.Broker) -> None:
    for actor in list(declared):
        actor.broker = broker
        broker.declare_actor(actor)


def get_app_broker(app: Flask) -> dramatiq.Broker:
    return app.extensions["dramatiq"]


def is_embedded(app: Flask) -> bool:
    return not app.config.get("RABBITMQ_URL")


class InProcessWorker:
    """The embedded mode's worker: a real `dramatiq.Worker` consuming the in-process broker inside
    the web process, so the very same actors run as in production."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        bind_actors(get_app_broker(app))
        # A short poll timeout lets the web process stop promptly; idle polling of the in-memory
        # broker costs nothing.
        self.worker = dramatiq.Worker(
            get_app_broker(app), worker_threads=app.config["WORKER_THREADS"], worker_timeout=200
        )

    def start(self) -> InProcessWorker:
        self.worker.start()
        self.app.extensions["dramatiq_worker"] = self
        return self

    def stop(self, timeout_ms: int = 10_000) -> None:
        self.worker.stop(timeout=timeout_ms)
        self.app.extensions.pop("dramatiq_worker", None)

    def join(self) -> None:
        """Block until every queued message (retries included) has been processed, and the
        chargers' last seen written."""
        broker = self.worker.broker
        for queue_name in broker.get_declared_queues():
            broker.join(queue_name, fail_fast=False)
        self.worker.join()
        with self.app.app_context():
            self.app.extensions["last_seen"].flush()

    @property
    def alive(self) -> bool:
        return any(t.is_alive() for t in self.worker.workers)


class BrokerProbe:
    """Answers "is RabbitMQ reachable?" for the health check, at most once per `ttl` seconds, so a
    busy load balancer polling /healthz cannot open a flood of AMQP connections."""

    def __init__(self, url: str, ttl: float) -> None:
        self.parameters = pika.URLParameters(url)
        self.parameters.socket_timeout = 2
        self.parameters.blocked_connection_timeout = 2
        self.parameters.connection_attempts = 1
        self.ttl = ttl
        self._checked_at = 0.0
        self._result: str = "unknown"
        self._lock = threading.Lock()

    def status(self) -> str:
        with self._lock:
            now = time.monotonic()
            if now - self._checked_at >= self.ttl:
                self._result = self._check()
                self._checked_at = now
            return self._result

    def _check(self) -> str:
        try:
            connection = pika.BlockingConnection(self.parameters)
        except Exception as exc:  # pika raises many unrelated types for "not reachable"
            log.warning("RabbitMQ health check failed: %s", exc)
            return "unreachable"
        try:
            connection.close()
        except Exception:
            log.debug("closing the probe connection failed", exc_info=True)
        return "ok"
