"""`GET /healthz` for load balancers and orchestrators: 200 when the node can do its work, else 503."""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

from csms.broker import BrokerProbe, is_embedded
from csms.extensions import db
from csms.pipeline import dead_letters, outbox

log = logging.getLogger(__name__)
bp = Blueprint("health", __name__)

try:
    VERSION = version("csms")
except PackageNotFoundError:  # running from a source tree that was never installed
    VERSION = "unknown"


def _database_status() -> str:
    try:
        db.session.execute(text("SELECT 1"))
        return "ok"
    except Exception as exc:  # any driver error means "not usable"
        log.warning("database health check failed: %s", exc)
        db.session.rollback()
        return "unreachable"


def _broker_status() -> str:
    app = current_app._get_current_object()
    if is_embedded(app):
        worker = app.extensions.get("dramatiq_worker")
        return "ok" if worker is not None and worker.alive else "stopped"
    probe = app.extensions.get("broker_probe")
    if probe is None:
        probe = app.extensions["broker_probe"] = BrokerProbe(
            app.config["RABBITMQ_URL"], app.config["HEALTH_CACHE_SECONDS"]
        )
    return probe.status()


def _gateway_stats() -> dict:
    """This node's chargers and what it could not deliver yet, for dashboards and alerts."""
    gateway = current_app.extensions["ocpp"]
    stats = {"connections": len(gateway.registry), **gateway.registry.counters}
    stats["handoff"] = dict(gateway.handoff.stats)
    stats["transaction_ids"] = dict(gateway.transaction_ids.stats)
    try:
        stats["outbox"] = outbox.backlog()
    except Exception:  # the database check above reports the cause
        db.session.rollback()
        stats["outbox"] = None
    return stats


@bp.get("/healthz")
def healthz():
    """Report the database, the broker, the mode, this node and the dead-letter queues' depths; 503
    when a dependency is down."""
    checks = {"db": _database_status(), "broker": _broker_status()}
    healthy = all(value == "ok" for value in checks.values())
    body = {
        "status": "ok" if healthy else "degraded",
        **checks,
        "mode": "embedded" if is_embedded(current_app) else "production",
        "node": current_app.config["NODE_ID"],
        "version": VERSION,
        "dead_letters": dead_letters.current_depths(current_app._get_current_object()),
        "gateway": _gateway_stats(),
        "cluster": current_app.extensions["ocpp"].node.status(),
    }
    return jsonify(body), 200 if healthy else 503
