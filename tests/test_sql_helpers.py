"""The batch write helpers every actor relies on, on SQLite and on PostgreSQL (where a batch travels
as one JSON record set): conflicts skipped within and across batches, counts, values of every
column type kept exactly, only-raise updates, and a naive timestamp refused."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from flask import Flask
from sqlalchemy import select, text

from csms.extensions import db
from csms.models import ChargePoint, MeterSample, OcppMessage, OutboxMessage
from csms.services.sql import any_of, insert_ignoring_conflicts, update_if_lower
from tests.builders import a_charge_point

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
SAMPLE_KEY = ["charge_point_id", "connector_id", "sampled_at", "measurand", "phase", "location", "context"]


@pytest.fixture
def postgres_app(make_app, postgres_url: str):
    app = make_app(DATABASE_URL=postgres_url)
    with app.app_context():
        yield app


def a_frame_row(**overrides) -> dict:
    row = {
        "event_id": str(uuid.uuid4()),
        "charge_point_id": "SQL-1",
        "node_id": None,
        "direction": "in",
        "message_type": 2,
        "unique_id": "u-1",
        "action": "DataTransfer",
        "payload": {"vendorId": "v", "data": 'ünïcødé "quoted" \\ back\nslash'},
        "error_code": None,
        "error_description": None,
        "received_at": T0,
    }
    return {**row, **overrides}


def test_insert_skips_conflicts_within_and_across_batches(any_db_app: Flask) -> None:
    first, second = a_frame_row(), a_frame_row(unique_id="u-2")
    assert insert_ignoring_conflicts(db.session, OcppMessage, [first, first], ["event_id"]) == 1
    assert insert_ignoring_conflicts(db.session, OcppMessage, [first, second], ["event_id"]) == 1
    assert insert_ignoring_conflicts(db.session, OcppMessage, [second], ["event_id"], counted=False) is None
    db.session.commit()
    assert db.session.scalars(select(OcppMessage.unique_id).order_by(OcppMessage.id)).all() == ["u-1", "u-2"]


@pytest.mark.parametrize(
    "payload",
    [{"a": [1, 2.5, None, True]}, [2, "x", {}], "a JSON string", 42, None, {"big": 2**70}],
    ids=repr,
)
def test_insert_keeps_every_value_as_given(any_db_app: Flask, payload) -> None:
    row = a_frame_row(payload=payload, node_id="node-ü", error_code="GenericError", message_type=4)
    insert_ignoring_conflicts(db.session, OcppMessage, [row], ["event_id"], counted=False)
    db.session.commit()
    stored = db.session.scalars(select(OcppMessage)).one()
    for name, value in row.items():
        assert getattr(stored, name) == value, name
    assert stored.stored_at.tzinfo is not None  # the column's Python default applied


def test_insert_keeps_decimals_and_timestamps_exactly(any_db_app: Flask) -> None:
    point = a_charge_point()
    at = datetime(2026, 11, 26, 8, 0, 0, 123456, tzinfo=UTC)
    rows = [
        {
            "charge_point_id": point.id,
            "connector_id": 1,
            "transaction_id": None,
            "sampled_at": at + timedelta(seconds=n),
            "measurand": "Power.Active.Import",
            "phase": "L1",
            "location": "",
            "context": "",
            "unit": "W",
            "value": Decimal(value),
            "raw_value": value,
            "raw_unit": "kW",
        }
        for n, value in enumerate(["0.0001", "9876543210.1234", "-7"])
    ]
    assert insert_ignoring_conflicts(db.session, MeterSample, rows, SAMPLE_KEY) == 3
    db.session.commit()
    stored = db.session.scalars(select(MeterSample).order_by(MeterSample.sampled_at)).all()
    assert [s.value for s in stored] == [Decimal("0.0001"), Decimal("9876543210.1234"), Decimal("-7")]
    assert [s.sampled_at for s in stored] == [row["sampled_at"] for row in rows]


def test_insert_refuses_a_naive_timestamp(any_db_app: Flask) -> None:
    with pytest.raises(Exception, match="naive datetime refused"):
        insert_ignoring_conflicts(
            db.session, OcppMessage, [a_frame_row(received_at=datetime(2026, 1, 1))], ["event_id"]
        )
    db.session.rollback()
    assert db.session.scalars(select(OcppMessage)).all() == []


def test_update_only_raises(any_db_app: Flask) -> None:
    for n in "abc":
        a_charge_point(charge_point_id=f"SQL-{n}")
    db.session.execute(
        ChargePoint.__table__.update()
        .where(ChargePoint.charge_point_id == "SQL-b")
        .values(last_seen_at=T0 + timedelta(hours=1))
    )
    rows = [
        {"charge_point_id": "SQL-c", "last_seen_at": T0},
        {"charge_point_id": "SQL-b", "last_seen_at": T0},  # older than stored: unchanged
        {"charge_point_id": "SQL-a", "last_seen_at": T0 + timedelta(minutes=5)},
        {"charge_point_id": "SQL-unknown", "last_seen_at": T0},
    ]
    update_if_lower(db.session, ChargePoint, "charge_point_id", "last_seen_at", rows)
    db.session.commit()
    seen = dict(db.session.execute(select(ChargePoint.charge_point_id, ChargePoint.last_seen_at)).all())
    assert seen == {"SQL-a": T0 + timedelta(minutes=5), "SQL-b": T0 + timedelta(hours=1), "SQL-c": T0}
    update_if_lower(db.session, ChargePoint, "charge_point_id", "last_seen_at", rows)  # a repeat: no change
    db.session.commit()
    assert (
        dict(db.session.execute(select(ChargePoint.charge_point_id, ChargePoint.last_seen_at)).all()) == seen
    )


def test_update_locks_records_in_key_order(postgres_app: Flask) -> None:
    """A transaction holding the lower record and then taking the higher one (key order, as every
    writer does) must not deadlock with a concurrent update given the two the other way round:
    that update waits on the lower record before touching the higher one, whatever plan the server
    picks (here the one that visits the records in the order given)."""
    low, high = "SQL-LOCK-1", "SQL-LOCK-2"
    for charge_point_id in (low, high):
        a_charge_point(charge_point_id=charge_point_id)
    db.session.commit()
    failures: list[BaseException] = []

    def other_writer() -> None:
        with postgres_app.app_context():
            try:
                for setting in ("enable_hashjoin", "enable_mergejoin", "enable_seqscan"):
                    db.session.execute(text(f"SET LOCAL {setting} = off"))
                rows = [
                    {"charge_point_id": cp, "last_seen_at": T0 + timedelta(hours=1)} for cp in (high, low)
                ]
                update_if_lower(db.session, ChargePoint, "charge_point_id", "last_seen_at", rows)
                db.session.commit()
            except BaseException as exc:  # reported below
                failures.append(exc)
            finally:
                db.session.remove()

    def raise_to(charge_point_id: str) -> None:
        rows = [{"charge_point_id": charge_point_id, "last_seen_at": T0}]
        update_if_lower(db.session, ChargePoint, "charge_point_id", "last_seen_at", rows)

    raise_to(low)
    other = threading.Thread(target=other_writer)
    other.start()
    with db.engine.connect() as observer:
        # Each look is a transaction of its own: PostgreSQL shows pg_stat_activity as of a
        # transaction's first look at it, so one long transaction would never see the wait begin.
        waiting = (
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        for _ in range(100):
            seen = observer.execute(text(waiting)).scalar()
            observer.rollback()
            if seen:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the other writer never waited for the lower record")
    try:
        raise_to(high)  # would wait for the other writer, and deadlock, had it taken `high` first
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    finally:
        other.join(timeout=30)
    assert failures == []
    seen = dict(db.session.execute(select(ChargePoint.charge_point_id, ChargePoint.last_seen_at)).all())
    assert seen == {low: T0 + timedelta(hours=1), high: T0 + timedelta(hours=1)}


def test_update_does_not_block_inserts_referencing_the_records(postgres_app: Flask) -> None:
    """While one worker's transaction has raised a charger's last-seen time, another may store
    samples of that charger (a foreign key to it) without waiting for the first to commit."""
    point = a_charge_point(charge_point_id="SQL-FK-1")
    db.session.commit()
    rows = [{"charge_point_id": "SQL-FK-1", "last_seen_at": T0}]
    update_if_lower(db.session, ChargePoint, "charge_point_id", "last_seen_at", rows)
    inserted = threading.Event()

    def other_worker() -> None:
        with postgres_app.app_context():
            try:
                sample = {
                    "charge_point_id": point.id,
                    "connector_id": 1,
                    "transaction_id": None,
                    "sampled_at": T0,
                    "measurand": "Energy.Active.Import.Register",
                    "phase": "",
                    "location": "",
                    "context": "",
                    "unit": "Wh",
                    "value": Decimal(1),
                    "raw_value": "1",
                    "raw_unit": "",
                }
                db.session.execute(text("SET LOCAL lock_timeout = '5s'"))
                insert_ignoring_conflicts(db.session, MeterSample, [sample], SAMPLE_KEY)
                db.session.commit()
                inserted.set()
            finally:
                db.session.remove()

    other = threading.Thread(target=other_worker)
    other.start()
    try:
        assert inserted.wait(timeout=3), "the insert waited for the update's transaction"
    finally:
        db.session.commit()
        other.join(timeout=10)


@pytest.mark.parametrize("wanted", [[], ["SQL-any-2"], ["SQL-any-1", "SQL-any-3", "SQL-any-1", "missing"]])
def test_any_of_selects_the_given_values(any_db_app: Flask, wanted: list[str]) -> None:
    pks = {f"SQL-any-{n}": a_charge_point(charge_point_id=f"SQL-any-{n}").id for n in (1, 2, 3)}
    found = db.session.scalars(
        select(ChargePoint.id).where(any_of(db.session, ChargePoint.charge_point_id, wanted))
    ).all()
    assert sorted(found) == sorted(pks[cp] for cp in set(wanted) & pks.keys())


def test_insert_keeps_bytes_exactly(any_db_app: Flask) -> None:
    body = bytes(range(256)) + b'\\x00{"json": "no"}'
    rows = [{"message_id": str(uuid.uuid4()), "queue_name": "metering", "body": body}]
    assert insert_ignoring_conflicts(db.session, OutboxMessage, rows, ["message_id"]) == 1
    db.session.commit()
    assert db.session.scalars(select(OutboxMessage.body)).one() == body
