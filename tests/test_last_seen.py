"""Chargers' last seen, noted by the batches and written apart from them (csms.pipeline.last_seen):
each charger's latest time wins, a failed write keeps the times, and a worker writes what it noted
while it runs and when it stops. The whole path (a charger's frames through RabbitMQ and a worker
process) is in tests/test_pipeline_flow.py."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError

from csms.extensions import db
from csms.models import ChargePoint
from csms.pipeline import last_seen
from csms.services import charger_state
from tests.builders import a_charge_point
from tests.support.processes import wait_until

T0 = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)


def seen_at(charge_point_id: str) -> datetime | None:
    db.session.expire_all()
    return db.session.scalar(
        select(ChargePoint.last_seen_at).where(ChargePoint.charge_point_id == charge_point_id)
    )


def test_a_flush_writes_each_chargers_latest_time_and_never_lowers_one(any_db_app: Flask) -> None:
    a_charge_point(charge_point_id="LS-1")
    a_charge_point(charge_point_id="LS-2", last_seen_at=T0 + timedelta(hours=1))
    store = any_db_app.extensions["last_seen"]
    store.flush()  # whatever earlier tests of this process left
    last_seen.note([("LS-1", T0 + timedelta(seconds=5)), ("LS-2", T0)])
    last_seen.note([("LS-1", T0), ("LS-1", T0 + timedelta(seconds=9)), ("LS-unknown", T0)])

    assert store.flush() == 3
    assert seen_at("LS-1") == T0 + timedelta(seconds=9)
    assert seen_at("LS-2") == T0 + timedelta(hours=1)  # older than stored: unchanged
    assert store.flush() == 0  # nothing noted since


def test_a_failed_flush_keeps_its_times_for_the_next(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    a_charge_point(charge_point_id="LS-3")
    store = app.extensions["last_seen"]
    store.flush()
    last_seen.note([("LS-3", T0)])
    touch = charger_state.touch

    def unreachable(seen):
        raise ConnectionError("database away")

    monkeypatch.setattr(charger_state, "touch", unreachable)
    with pytest.raises(ConnectionError):
        store.flush()
    last_seen.note([("LS-3", T0 - timedelta(seconds=1))])  # older than the kept time: ignored
    monkeypatch.setattr(charger_state, "touch", touch)

    assert store.flush() == 1
    assert seen_at("LS-3") == T0


def test_a_worker_writes_while_it_runs_and_when_it_stops(make_app) -> None:
    app = make_app()
    flusher = next(
        m for m in app.extensions["dramatiq"].middleware if isinstance(m, last_seen.LastSeenFlusher)
    )
    flusher.interval = 0.05
    with app.app_context():
        a_charge_point(charge_point_id="LS-4")
        flusher.after_worker_boot(app.extensions["dramatiq"], None)
        last_seen.note([("LS-4", T0)])
        assert wait_until(lambda: seen_at("LS-4") == T0, timeout=5)

        flusher.interval = 3600  # no more periodic flushes: only the one at shutdown
        time.sleep(0.1)
        last_seen.note([("LS-4", T0 + timedelta(minutes=1))])
        flusher.before_worker_shutdown(app.extensions["dramatiq"], None)
        assert seen_at("LS-4") == T0 + timedelta(minutes=1)


def test_a_flush_never_waits_long_for_a_row_a_batch_holds(make_app, postgres_url: str) -> None:
    app = make_app(DATABASE_URL=postgres_url)
    with app.app_context():
        a_charge_point(charge_point_id="LS-5")
        db.session.commit()
        store = app.extensions["last_seen"]
        store.flush()
        last_seen.note([("LS-5", T0)])
        with db.engine.connect() as batch:  # a batch's transaction, holding the charger's row
            batch.execute(text("UPDATE charge_points SET vendor = 'x' WHERE charge_point_id = 'LS-5'"))
            began = time.monotonic()
            with pytest.raises(OperationalError, match="lock timeout"):
                store.flush()
            assert time.monotonic() - began < 2
            batch.rollback()

        assert store.flush() == 1  # the same times, once the row is free
        assert seen_at("LS-5") == T0
