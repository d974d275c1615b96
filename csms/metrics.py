"""Prometheus metrics: every counter, gauge and histogram of the CSMS, in one place, and `GET /metrics`.

The gateway's hot path only increments (a cached child per label set, no label lookup per message)
and observes one histogram per reply. Figures that cost a query (the outbox backlog, dead letters,
unpublished integration events) are read when Prometheus scrapes, at most once per
`HEALTH_CACHE_SECONDS` for RabbitMQ.

Several processes: `csms-web --processes N` puts N processes on one port, so a scrape reaches any
one of them. The supervisor gives its children a shared `PROMETHEUS_MULTIPROC_DIR`
(prometheus_client's multiprocess mode), and whichever child answers reports the sum of all of
them. Workers use Dramatiq's own Prometheus middleware, which runs the same multiprocess mode over
the `dramatiq --processes` of one worker and serves it on `dramatiq_prom_port` (see `csms.worker`);
the worker-side metrics below (events relayed, webhook deliveries) land in its output too.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable

from flask import Blueprint, Flask, Response, current_app, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

# --- web: the gateway ----------------------------------------------------------------------------
CHARGERS_CONNECTED = Gauge(
    "csms_chargers_connected", "Chargers holding a WebSocket to this node.", multiprocess_mode="livesum"
)
OCPP_MESSAGES = Counter(
    "csms_ocpp_messages_total",
    "Charger-initiated OCPP messages answered, by action and outcome (result, error).",
    ["action", "outcome"],
)
OCPP_REPLY_SECONDS = Histogram(
    "csms_ocpp_reply_seconds",
    "From a charger's CALL read to its answer written (hand-off included).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
OCPP_DROPPED_FRAMES = Counter("csms_ocpp_dropped_frames_total", "Frames without a readable id, dropped.")
HANDOFF_BATCHES = Counter("csms_handoff_batches_total", "Messages handed to the broker or the outbox.")
HANDOFF_ITEMS = Counter("csms_handoff_items_total", "Exchanges handed off (several share a batch).")
OUTBOX_BACKLOG = Gauge(
    "csms_outbox_backlog", "Hand-off messages parked in the outbox table.", multiprocess_mode="mostrecent"
)
DEAD_LETTERS = Gauge(
    "csms_dead_letter_messages",
    "Messages in each queue's dead-letter queue (<queue>.XQ).",
    ["queue"],
    multiprocess_mode="mostrecent",
)
CHARGERS_REGISTERED = Gauge(
    "csms_chargers_registered",
    "Charge points registered (any status), for the share offline.",
    multiprocess_mode="mostrecent",
)
EVENTS_BACKLOG = Gauge(
    "csms_integration_events_backlog",
    "Integration events committed and not yet published.",
    multiprocess_mode="mostrecent",
)
COMMANDS = Counter(
    "csms_commands_total",
    "CSMS-initiated calls by action and outcome (answered, call_error, invalid, timeout, offline).",
    ["action", "outcome"],
)
COMMAND_SECONDS = Histogram(
    "csms_command_seconds",
    "From sending a CSMS-initiated call to its answer (or giving up).",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
SOCKETIO_CLIENTS = Gauge(
    "csms_socketio_clients", "Socket.IO clients connected to this node.", multiprocess_mode="livesum"
)

# --- workers: the outside world --------------------------------------------------------------------
EVENTS_PUBLISHED = Counter(
    "csms_integration_events_published_total",
    "Integration events published, by routing key's first word.",
    ["area"],
)
WEBHOOK_DELIVERIES = Counter(
    "csms_webhook_attempts_total", "Webhook delivery attempts by result (succeeded, failed).", ["result"]
)

_ANSWERED: dict[tuple[str, str], Callable[[], None]] = {}
_COMMANDED: dict[tuple[str, str], Callable[[], None]] = {}


def answered(action: str, outcome: str, seconds: float) -> None:
    """A charger's CALL was answered (`outcome` "result" or "error") after `seconds`."""
    inc = _ANSWERED.get((action, outcome))
    if inc is None:
        inc = _ANSWERED[(action, outcome)] = OCPP_MESSAGES.labels(action, outcome).inc
    inc()
    OCPP_REPLY_SECONDS.observe(seconds)


def commanded(action: str, outcome: str, seconds: float) -> None:
    inc = _COMMANDED.get((action, outcome))
    if inc is None:
        inc = _COMMANDED[(action, outcome)] = COMMANDS.labels(action, outcome).inc
    inc()
    COMMAND_SECONDS.observe(seconds)


# --- exposition ------------------------------------------------------------------------------------
bp = Blueprint("metrics", __name__)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text format; with CSMS_METRICS_TOKEN set, only for `Authorization: Bearer <it>`."""
    token = current_app.config["METRICS_TOKEN"]
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            return Response(
                "metrics need the bearer token (CSMS_METRICS_TOKEN)\n", 401, mimetype="text/plain"
            )
    _read_on_scrape()
    if MULTIPROCESS:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


def _read_on_scrape() -> None:
    """The gauges that cost a query, read now (a failing dependency leaves them as they were)."""
    from sqlalchemy import func, select

    from csms.extensions import db
    from csms.models import ChargePoint
    from csms.pipeline import dead_letters, outbox
    from csms.services import events

    try:
        OUTBOX_BACKLOG.set(outbox.backlog())
        EVENTS_BACKLOG.set(events.backlog())
        CHARGERS_REGISTERED.set(db.session.scalar(select(func.count()).select_from(ChargePoint)) or 0)
    except Exception:  # the database is down: /healthz says so; the gauges keep their last values
        db.session.rollback()
    depths = dead_letters.current_depths(current_app._get_current_object()) or {}
    for queue, depth in depths.items():
        DEAD_LETTERS.labels(queue).set(depth)
