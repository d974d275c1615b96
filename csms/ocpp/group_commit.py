"""Group commit: the writes a charger must wait for, made for many chargers in one transaction.

A StartTransaction cannot be answered before its row exists (its id is the transactionId), so
every one costs the web process a pooled connection, an INSERT and a COMMIT while the charger
waits. When thousands of chargers connect at once, those greenlets queue for the pool and the
database flushes its log once per charger. Here they queue for one writer instead: whatever arrived
while the previous batch was being written goes in the next one, so a lone request is written at
once (no added wait) and a storm costs one round trip and one commit per batch.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Generic, TypeVar

from flask import Flask

from csms.extensions import db

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")

_STOP = object()


class GroupCommit(Generic[Item, Result]):
    """`submit(item)` returns `write(items)[i]` for its item, written with whatever else is waiting.

    `write` runs in its own app context and must commit (or roll back and raise) by itself. If a
    batch fails, its items are written one by one, so one bad item fails only its own submitter.
    Before `start()` (and after `stop()`), `submit` writes in the caller's own context.
    """

    def __init__(self, app: Flask, write: Callable[[list[Item]], list[Result]], *, max_batch: int = 500):
        self.app = app
        self.write = write
        self.max_batch = max_batch
        self.stats = {"items": 0, "batches": 0}
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Write what is queued and stop; later submits write in their caller's context."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._queue.put(_STOP)
        thread.join(timeout=10)
        while True:  # queued by a submitter that saw the writer running just before it stopped
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not _STOP:
                self._write([item])

    def submit(self, item: Item) -> Result:
        if self._thread is None:
            return self.write([item])[0]
        future: Future[Result] = Future()
        self._queue.put((item, future))
        return future.result()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch = [self._queue.get()]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if _STOP in batch:
                batch.remove(_STOP)
                stopping = True
            if not batch:
                continue
            try:
                self._write(batch)
            except Exception as exc:  # never leave a submitter waiting for ever
                log.exception("group commit failed")
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)

    def _write(self, batch: list[tuple[Item, Future]]) -> None:
        self.stats["items"] += len(batch)
        self.stats["batches"] += 1
        with self.app.app_context():
            try:
                results = self.write([item for item, _ in batch])
            except Exception:
                log.warning("group commit of %d item(s) failed; writing them one by one", len(batch))
                for item, future in batch:
                    try:
                        future.set_result(self.write([item])[0])
                    except Exception as exc:
                        future.set_exception(exc)
                return
            finally:
                db.session.remove()
        for (_, future), result in zip(batch, results, strict=True):
            future.set_result(result)
