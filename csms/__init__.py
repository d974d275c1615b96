"""CSMS: an OCPP 1.6J charge-station management system."""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine

from csms import broker, startup
from csms import config as config_module
from csms.broker import is_embedded


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    """SQLite: enforce foreign keys, let readers and a writer work at once (WAL), wait on locks."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=15000")
        cursor.close()


def _database_uri(app: Flask) -> str:
    url = app.config.get("DATABASE_URL")
    if url:
        return config_module.normalize_database_url(url)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{Path(app.instance_path) / 'csms.sqlite3'}"


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app: settings, extensions, the broker with its actors, blueprints and CLI commands.

    Without `config` the app is a process's own (web, worker, flask CLI), configured by its
    environment, which must not be a replaced system's (`config.refuse_legacy_settings`)."""
    if config is None:
        config_module.refuse_legacy_settings()
    settings = config_module.load(config)
    instance_path = settings["INSTANCE_PATH"]
    app = Flask(__name__, instance_path=os.path.abspath(instance_path) if instance_path else None)
    app.config.update(settings)
    app.config["SQLALCHEMY_DATABASE_URI"] = _database_uri(app)
    app.config["SQLALCHEMY_ECHO"] = settings["SQL_ECHO"]
    # No pre-ping: it costs a round trip per checkout, on every message; a connection that
    # died is detected on use, the pool is invalidated, and the message is retried.
    engine_options = app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {"pool_recycle": 1800})
    # Statement parameters carry password hashes, key hashes and tokens: SQLAlchemy leaves them out
    # of its exception messages (an IntegrityError traceback in the log) and of CSMS_SQL_ECHO.
    engine_options["hide_parameters"] = True
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        engine_options.update(pool_size=settings["DB_POOL_SIZE"], max_overflow=settings["DB_MAX_OVERFLOW"])

    from csms import cli, errors, metrics, realtime, request_guard
    from csms.api import health
    from csms.extensions import db, migrate, sock

    db.init_app(app)
    migrate.init_app(app, db, directory=str(Path(__file__).resolve().parent.parent / "migrations"))
    sock.init_app(app)
    realtime.init_app(app, async_mode=_async_mode())
    broker.init_app(app)
    errors.init_app(app)
    request_guard.init_app(app)
    cli.init_app(app)
    app.register_blueprint(health.bp)
    metrics.init_app(app)
    if not is_embedded(app) and (reason := startup.unsafe_secret(settings)):
        # The serving processes refuse to start (csms.startup); a CLI command only warns.
        logging.getLogger("csms").warning("%s: tokens are forgeable", reason)
    from csms import api, cors, dashboard
    from csms.ocpp import route

    route.init_app(app)
    api.init_app(app)
    dashboard.init_app(app)
    cors.init_app(app)
    _trust_proxies(app)
    return app


def _trust_proxies(app: Flask) -> None:
    """Outermost middleware: every part of the app, Socket.IO included, sees the client's address."""
    from csms.proxies import TrustedProxies, parse_networks

    try:
        trusted = parse_networks(app.config["TRUSTED_PROXIES"])
    except ValueError as exc:
        raise ValueError(f"CSMS_TRUSTED_PROXIES={app.config['TRUSTED_PROXIES']!r}: {exc}") from exc
    if trusted:
        app.wsgi_app = TrustedProxies(app.wsgi_app, trusted)  # type: ignore[method-assign]


def _async_mode() -> str:
    """gevent when the process was monkey-patched (`python wsgi.py`), plain threads otherwise (tests, CLI)."""
    from gevent import monkey

    return "gevent" if monkey.is_module_patched("socket") else "threading"
