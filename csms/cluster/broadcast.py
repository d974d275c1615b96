"""Cluster-wide announcements that travel with the database transaction that caused them.

A service that changes what every web node caches (a charger, its key, an idTag) or must act on (a
command queued for a charger) calls `announce(kind, key)` inside its transaction. On PostgreSQL that
is `pg_notify`: PostgreSQL delivers it to every listening node when, and only if, the transaction
commits, whoever wrote it (a web node, a worker, `flask charger import`), so no node can hear of a
change it cannot read yet, nor of one that was rolled back. Each web node listens on one connection
of its own (`Listener`) and calls the handlers subscribed to the kind.

On SQLite (embedded mode: one process, so the only node is this one) the announcements of a session
are kept until it commits and then handed to this process's `Listener`.

A node that lost its listening connection may have missed announcements: when it listens again it
calls the `on_resync` handlers, which drop or reload what they cache.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable

from flask import Flask, current_app
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from csms.extensions import db

log = logging.getLogger(__name__)

CHANNEL = "csms_cluster"
MAX_KEY = 7000  # pg_notify's payload is at most 8,000 bytes
_PENDING = "csms.broadcasts"  # session.info key: SQLite announcements waiting for the commit


def announce(kind: str, key: str, session: Session | None = None) -> None:
    """Tell every node `kind` happened to `key` once the current transaction commits."""
    if " " in kind or len(key.encode()) > MAX_KEY:
        raise ValueError(f"announcement {kind!r} too long or malformed")
    session = session or db.session
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_notify(CHANNEL, f"{kind} {key}")))
    else:
        session.connection()  # a transaction, so that its commit or rollback decides (events below)
        session.info.setdefault(_PENDING, []).append((kind, key))


@event.listens_for(Session, "after_commit")
def _deliver_locally(session: Session) -> None:
    pending = session.info.pop(_PENDING, None)
    if not pending:
        return
    listener = current_app.extensions.get("broadcasts") if _has_app() else None
    if listener is not None:
        for kind, key in pending:
            listener.deliver(kind, key)


@event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop(_PENDING, None)


def _has_app() -> bool:
    try:
        current_app._get_current_object()
    except RuntimeError:
        return False
    return True


Handler = Callable[[str], None]


class Listener:
    """A node's ear: `subscribe(kind, handler)` calls `handler(key)` for each announcement of
    `kind`, from one background thread (a greenlet in the web process), in the order committed."""

    RETRY_SECONDS = 1.0
    POLL_SECONDS = 1.0  # how often the listening loop looks up from its wait to see if it must stop

    def __init__(self, app: Flask):
        self.app = app
        self._handlers: dict[str, list[Handler]] = defaultdict(list)
        self._resync: list[Callable[[], None]] = []
        self._running = threading.Event()
        self.listening = threading.Event()
        self.counters = {"announcements": 0, "resyncs": 0}
        self.in_process = not app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql")
        if self.in_process:  # SQLite: delivered after each commit, nothing to listen to
            self.listening.set()
        app.extensions["broadcasts"] = self

    def subscribe(self, kind: str, handler: Handler) -> None:
        self._handlers[kind].append(handler)

    def on_resync(self, handler: Callable[[], None]) -> None:
        self._resync.append(handler)

    def deliver(self, kind: str, key: str) -> None:
        self.counters["announcements"] += 1
        for handler in self._handlers.get(kind, ()):
            try:
                handler(key)
            except Exception:
                log.exception("handling the announcement %s %s failed", kind, key[:100])

    # --- PostgreSQL ------------------------------------------------------------------------------

    def start(self) -> Listener:
        """Listen on PostgreSQL; on SQLite announcements arrive through `deliver` and nothing runs."""
        if self.in_process:
            return self
        with self.app.app_context():
            url = db.engine.url
        self._running.set()
        conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        threading.Thread(target=self._listen, args=(conninfo,), name="broadcasts", daemon=True).start()
        return self

    def stop(self) -> None:
        self._running.clear()

    def _listen(self, conninfo: str) -> None:
        import psycopg  # the PostgreSQL driver, present whenever the database is PostgreSQL

        first = True
        while self._running.is_set():
            try:
                with psycopg.connect(conninfo, autocommit=True) as connection:
                    connection.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    if not first:
                        self._resynchronize()
                    first = False
                    while self._running.is_set():
                        for notice in connection.notifies(timeout=self.POLL_SECONDS):
                            kind, _, key = notice.payload.partition(" ")
                            self.deliver(kind, key)
            except Exception as exc:
                self.listening.clear()
                first = False
                log.warning("cluster announcements: listening failed (%s); retrying", exc)
                time.sleep(self.RETRY_SECONDS)

    def _resynchronize(self) -> None:
        self.counters["resyncs"] += 1
        log.info("cluster announcements: listening again; dropping what may have changed meanwhile")
        for handler in self._resync:
            try:
                handler()
            except Exception:
                log.exception("resynchronizing after a lost announcement connection failed")
