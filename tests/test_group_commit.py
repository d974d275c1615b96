"""Transaction ids written for many chargers at once: one batch, one id per start key, and one bad
start failing alone. On SQLite and PostgreSQL; the writer runs in a thread as it does in the web
process (a greenlet there)."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from csms.extensions import db
from csms.models import Transaction
from csms.ocpp import group_commit
from csms.ocpp.group_commit import GroupCommit
from csms.services import transactions
from csms.services.transactions import Start
from tests.builders import a_charge_point

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def starts(charge_point_pk: int, count: int) -> list[Start]:
    return [Start(charge_point_pk, 1, f"TAG-{n}", T0 + timedelta(seconds=n), 100 * n) for n in range(count)]


def transaction_count() -> int:
    count = db.session.scalar(select(func.count()).select_from(Transaction))
    db.session.rollback()
    return count


def test_one_batch_gives_each_start_its_own_id_and_a_resend_the_first_one(any_db_app):
    point = a_charge_point()
    [first] = transactions.allocate_transaction_ids([Start(point.id, 1, "TAG-0", T0, 0)])
    batch = starts(point.id, 3)
    batch.insert(2, batch[1])  # the same resend twice in one batch
    ids = transactions.allocate_transaction_ids(batch)
    assert ids[0] == first
    assert ids[1] == ids[2] and len({ids[0], ids[1], ids[3]}) == 3
    assert transaction_count() == 3
    row = db.session.get(Transaction, ids[3])
    assert (row.id_tag, row.meter_start_wh, row.meter_last_wh, row.state) == ("TAG-2", 200, 200, "started")
    assert row.started_at == T0 + timedelta(seconds=2)


def submit_from_threads(writer: GroupCommit, items: list, app: Flask) -> dict[int, object]:
    """Every item submitted from its own thread at the same moment; index → id or exception."""
    results: dict[int, object] = {}
    barrier = threading.Barrier(len(items))

    def one(index: int, item) -> None:
        with app.app_context():
            barrier.wait()
            try:
                results[index] = writer.submit(item)
            except Exception as exc:  # asserted by the caller
                results[index] = exc

    threads = [threading.Thread(target=one, args=pair) for pair in enumerate(items)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


def test_concurrent_starts_share_batches_and_each_gets_its_row(any_db_app):
    point = a_charge_point()
    writer = GroupCommit(any_db_app, transactions.allocate_transaction_ids, max_batch=16)
    writer.start()
    try:
        items = starts(point.id, 40)
        results = submit_from_threads(writer, items, any_db_app)
    finally:
        writer.stop()
    assert len(set(results.values())) == 40
    assert writer.stats["items"] == 40 and writer.stats["batches"] < 40
    for index, transaction_id in results.items():
        row = db.session.get(Transaction, transaction_id)
        assert (row.id_tag, row.meter_start_wh) == (items[index].id_tag, items[index].meter_start_wh)
    assert transaction_count() == 40


def test_a_start_that_cannot_be_written_fails_alone(any_db_app):
    point = a_charge_point()
    writer = GroupCommit(any_db_app, transactions.allocate_transaction_ids)
    writer.start()
    try:
        items = starts(point.id, 6)
        items[3] = items[3]._replace(charge_point_id=point.id + 1000)  # no such charger: FK violation
        results = submit_from_threads(writer, items, any_db_app)
    finally:
        writer.stop()
    failed = {index for index, result in results.items() if isinstance(result, Exception)}
    assert failed == {3} and isinstance(results[3], IntegrityError)
    assert transaction_count() == 5


@pytest.mark.parametrize("started", [False, True])
def test_submit_writes_at_once_when_idle_or_not_started(app, started):
    point = a_charge_point()
    writer = GroupCommit(app, transactions.allocate_transaction_ids)
    if started:
        writer.start()
    try:
        transaction_id = writer.submit(starts(point.id, 1)[0])
    finally:
        writer.stop()
    assert db.session.get(Transaction, transaction_id).id_tag == "TAG-0"
    assert writer.stats == ({"items": 1, "batches": 1} if started else {"items": 0, "batches": 0})


def test_stop_writes_what_was_queued_behind_it(app):
    """A submitter that saw the writer running just before it stopped is still answered."""
    point = a_charge_point()
    writer = GroupCommit(app, transactions.allocate_transaction_ids)
    writer.start()
    writer._queue.put(group_commit._STOP)  # the writer has stopped taking items...
    writer._thread.join(timeout=10)
    late: Future = Future()
    writer._queue.put((starts(point.id, 1)[0], late))  # ...when this one is queued
    writer.stop()
    assert db.session.get(Transaction, late.result(timeout=1)).id_tag == "TAG-0"
