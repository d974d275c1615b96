"""Chargers' last seen, raised by each worker process about once a second, apart from the batches.

Every exchange of every queue says its charger was seen. Raising `charge_points.last_seen_at` inside
each batch's transaction locked those rows until the batch committed: a batch that takes seconds
(hundreds of StartTransactions in a connect storm) made every other batch naming one of its chargers
wait for it, and the dashboard's live events with them. So batches only note the times here
(`note`), and one statement per flush raises them (`csms.services.charger_state.touch`, which only
ever raises), in a transaction of its own that nothing waits for. A flush that fails keeps its
times for the next one; a worker that stops flushes first. What a killed worker had not flushed
(at most `interval` of it) is raised again by the charger's next message.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from datetime import datetime

import dramatiq
from dramatiq.middleware import Middleware
from flask import Flask, current_app
from sqlalchemy import text

log = logging.getLogger(__name__)

LOCK_TIMEOUT_MS = 200


def note(seen: Iterable[tuple[str, datetime]]) -> None:
    """Remember `(charge point id, time)` pairs for the app's next flush (inside an app context)."""
    current_app.extensions["last_seen"].note(seen)


class LastSeen:
    """The times one app's worker has noted and not yet written, each charger's latest."""

    def __init__(self) -> None:
        self._pending: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def note(self, seen: Iterable[tuple[str, datetime]]) -> None:
        with self._lock:
            for charge_point_id, at in seen:
                known = self._pending.get(charge_point_id)
                if known is None or known < at:
                    self._pending[charge_point_id] = at

    def flush(self) -> int:
        """Raise the noted times now (inside an app context); returns how many chargers it wrote.
        On a failure the times go back to be written by the next flush, and the error is raised."""
        from csms.extensions import db
        from csms.services import charger_state

        with self._lock:
            taken, self._pending = self._pending, {}
        if not taken:
            return 0
        try:
            if db.session.get_bind().dialect.name == "postgresql":
                # A batch holding one of these rows (a boot's) would hold the flush, and a flush
                # holding rows in charger order could deadlock with a batch taking them in its
                # own: it gives up instead, and the next flush writes the same times.
                db.session.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT_MS}ms'"))
            charger_state.touch(taken)
            db.session.commit()
        except Exception:
            db.session.rollback()
            self.note(taken.items())
            raise
        finally:
            db.session.remove()
        return len(taken)


class LastSeenFlusher(Middleware):
    """Flushes the app's `LastSeen` every `interval` seconds in each worker process, and once more
    at its shutdown."""

    def __init__(self, app: Flask, interval: float = 1.0) -> None:
        self.app = app
        self.interval = interval
        self.last_seen = app.extensions["last_seen"] = LastSeen()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stopped.clear()
        self._thread = threading.Thread(target=self._run, name="last-seen", daemon=True)
        self._thread.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(self.interval + 10)

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            self.flush()
        self.flush()

    def flush(self) -> None:
        """Write what is noted now; a failure is logged (the next flush tries again)."""
        try:
            with self.app.app_context():
                self.last_seen.flush()
        except Exception as exc:
            log.warning("could not raise chargers' last seen (kept for the next flush): %s", exc)
