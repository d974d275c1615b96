"""At-least-once delivery, exactly-once effects: every actor run twice, and twice at the same time
from two threads, on the same message leaves one effect; Start and Stop in any order, and repeated,
end in one consistent record. Runs the actors' code directly against SQLite and PostgreSQL."""

from __future__ import annotations

import functools
import threading
import uuid
from datetime import UTC, datetime

import pytest
from flask import Flask
from sqlalchemy import func, select, update

from actors.billing import settle_session
from actors.cms import record_cms_events
from actors.commands import record_commands
from actors.metering import process_meter_values
from actors.storage import record_exchanges
from actors.transactions import process_transaction_messages
from csms.extensions import db
from csms.models import (
    ChargingSession,
    CmsEvent,
    CommandAudit,
    Connector,
    LedgerEntry,
    MeterSample,
    OcppMessage,
    Transaction,
    Wallet,
)
from csms.services import billing, metering, transactions
from tests.support import exchanges

CP = "IDEM-1"


exchange = functools.partial(exchanges.exchange, CP)


@pytest.fixture
def world(any_db_app: Flask):
    return make_world(any_db_app)


def make_world(app: Flask) -> dict:
    return exchanges.a_customer_waiting(app, CP, "IDEM-TAG", "idem@example.test")


def run_twice(app: Flask, actor, *args) -> None:
    """Once, then twice more at the same time from two threads, each in its own app context."""
    actor.fn(*args)
    db.session.remove()
    errors: list[BaseException] = []

    def again() -> None:
        with app.app_context():
            try:
                actor.fn(*args)
            except BaseException as exc:  # surfaced below
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=again) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    db.session.expire_all()


def count(model, *where) -> int:
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


def start_exchange(world) -> dict:
    request = {"connectorId": 1, "idTag": "IDEM-TAG", "meterStart": 1000, "timestamp": "2026-09-01T10:00:00Z"}
    return exchange(
        "StartTransaction",
        request,
        {"transactionId": world["transaction_id"], "idTagInfo": {"status": "Accepted"}},
    )


def stop_exchange(world, meter_stop: int = 5000) -> dict:
    request = {
        "transactionId": world["transaction_id"],
        "meterStop": meter_stop,
        "timestamp": "2026-09-01T11:00:00Z",
        "reason": "Local",
    }
    return exchange("StopTransaction", request, {})


def meter_exchange(world, minute: int, kwh: str) -> dict:
    request = {
        "connectorId": 1,
        "transactionId": world["transaction_id"],
        "meterValue": [
            {
                "timestamp": f"2026-09-01T10:{minute:02d}:00Z",
                "sampledValue": [
                    {"value": kwh, "unit": "kWh"},
                    {"value": "230", "measurand": "Voltage", "phase": "L1"},
                ],
            }
        ],
    }
    return exchange("MeterValues", request, {})


def test_storage_and_status(world):
    status = exchange(
        "StatusNotification",
        {"connectorId": 2, "errorCode": "NoError", "status": "Faulted", "timestamp": "2026-09-01T09:00:00Z"},
        {},
    )
    run_twice(world["app"], record_exchanges, [status])
    assert count(OcppMessage) == 2
    assert db.session.scalar(select(Connector.status).where(Connector.connector_id == 2)) == "Faulted"


def test_metering_register_is_a_maximum_not_a_sum(world):
    run_twice(world["app"], process_transaction_messages, [start_exchange(world)])
    for minute, kwh in ((5, "2.0"), (10, "3.5")):
        run_twice(world["app"], process_meter_values, [meter_exchange(world, minute, kwh)])
    run_twice(world["app"], process_meter_values, [meter_exchange(world, 2, "1.5")])  # late, older reading
    assert count(MeterSample) == 6  # 3 messages x 2 values, however often delivered
    assert db.session.get(Transaction, world["transaction_id"]).meter_last_wh == 3500
    session = db.session.get(ChargingSession, world["session_id"])
    assert (session.state, session.energy_wh) == ("charging", 2500)
    assert session.cost_minor == 63  # 2.5 kWh x 0.25 = 0.625 -> 0.63


def test_one_batch_of_meter_values_for_two_transactions(world):
    """A batch as the gateway hands it off: several messages of one transaction, in any order, and
    one of another; registers are each transaction's maximum, however often the batch is applied."""
    [other] = transactions.allocate_transaction_ids(
        [
            transactions.Start(
                db.session.scalar(select(Transaction.charge_point_id)),
                2,
                "OTHER",
                datetime(2026, 9, 1, 10, 0, tzinfo=UTC),
                0,
            )
        ]
    )
    db.session.commit()
    second = meter_exchange(world, 7, "4.0")
    second["frames"][0]["payload"].update(connectorId=2, transactionId=other)
    batch = [
        meter_exchange(world, 10, "3.5"),
        second,
        meter_exchange(world, 5, "2.0"),
        meter_exchange(world, 2, "1.5"),
    ]
    run_twice(world["app"], process_transaction_messages, [start_exchange(world)])
    run_twice(world["app"], process_meter_values, batch)
    assert count(MeterSample) == 8
    assert count(OcppMessage, OcppMessage.action == "MeterValues") == 8
    assert db.session.get(Transaction, world["transaction_id"]).meter_last_wh == 3500
    assert db.session.get(Transaction, other).meter_last_wh == 4000
    session = db.session.get(ChargingSession, world["session_id"])
    assert (session.energy_wh, session.cost_minor) == (2500, 63)


def test_transactions_and_billing(world):
    run_twice(world["app"], process_transaction_messages, [start_exchange(world)])
    run_twice(world["app"], process_transaction_messages, [stop_exchange(world)])
    run_twice(world["app"], settle_session, world["session_id"])
    assert_billed_once(world, energy_wh=4000, cost_minor=100)


def test_stop_before_start_and_a_second_different_stop(world):
    run_twice(world["app"], process_transaction_messages, [stop_exchange(world)])
    assert db.session.get(Transaction, world["transaction_id"]).state == "stopped"
    assert db.session.get(ChargingSession, world["session_id"]).transaction_id is None  # not linked yet
    run_twice(world["app"], process_transaction_messages, [start_exchange(world)])  # links, then bills
    run_twice(world["app"], settle_session, world["session_id"])
    # a second StopTransaction with other values changes nothing: the first one won
    run_twice(world["app"], process_transaction_messages, [stop_exchange(world, meter_stop=9000)])
    run_twice(world["app"], settle_session, world["session_id"])
    assert_billed_once(world, energy_wh=4000, cost_minor=100)


def test_stop_for_an_unknown_transaction_is_recorded_not_crashed_on(world):
    unknown = exchange(
        "StopTransaction", {"transactionId": 424242, "meterStop": 1, "timestamp": "2026-09-01T11:00:00Z"}, {}
    )
    run_twice(world["app"], process_transaction_messages, [unknown])
    assert count(OcppMessage, OcppMessage.action == "StopTransaction") == 2
    assert db.session.get(Transaction, world["transaction_id"]).state == "started"


def test_command_audit(world):
    call = {
        "charge_point_id": CP,
        "node_id": "n",
        "frames": [
            exchanges.frame("out", 2, "Reset", {"type": "Soft"}, "c1"),
            exchanges.frame("in", 3, "Reset", {"status": "Accepted"}, "c1"),
        ],
        "command": {
            "action": "Reset",
            "outcome": "answered",
            "response": {"status": "Accepted"},
            "latency_ms": 12,
            "requested_by": None,
            "requested_at": datetime.now(UTC).isoformat(),
        },
    }
    run_twice(world["app"], record_commands, [call])
    assert count(CommandAudit) == 1
    assert count(OcppMessage) == 2


def test_cms_event(world):
    event = {
        "event_id": str(uuid.uuid4()),
        "type": "cms.station.created",
        "entity_type": "station",
        "entity_id": "7",
        "payload": {"name": "S"},
        "occurred_at": datetime.now(UTC).isoformat(),
    }
    run_twice(world["app"], record_cms_events, [event])
    assert count(CmsEvent) == 1


def assert_billed_once(world, *, energy_wh: int, cost_minor: int) -> None:
    session = db.session.get(ChargingSession, world["session_id"])
    assert (session.state, session.energy_wh, session.cost_minor) == ("completed", energy_wh, cost_minor)
    kinds = db.session.scalars(
        select(LedgerEntry.kind).where(LedgerEntry.session_id == world["session_id"]).order_by(LedgerEntry.id)
    ).all()
    assert kinds == ["hold", "capture", "refund"]
    held = db.session.get(Wallet, world["wallet_id"])
    assert (held.available_minor, held.held_minor) == (10_000 - cost_minor, 0)


@pytest.mark.postgres
def test_a_late_reading_never_overwrites_a_settled_session(make_app, postgres_url):
    """The metering actor refreshes a session's running figures while the billing actor settles it:
    the settlement locks the session first, so the refresh waits for it and then leaves the
    completed session alone (it used to write its running cost over the billed one)."""
    app = make_app(DATABASE_URL=postgres_url)
    with app.app_context():
        world_ = make_world(app)
        process_transaction_messages.fn([start_exchange(world_)])
        db.session.remove()
        process_transaction_messages.fn([stop_exchange(world_, meter_stop=2000)])  # 1,000 Wh
        db.session.remove()
        settling = billing.settle_in_transaction(world_["session_id"])  # holds the session's lock
        assert settling.captured_minor == 25

        refreshed: dict = {}

        def late_reading() -> None:  # MeterValues of the same transaction, 3,000 Wh
            with app.app_context():
                try:
                    db.session.execute(
                        update(Transaction)
                        .where(Transaction.id == world_["transaction_id"])
                        .values(meter_last_wh=4000)
                    )
                    refreshed.update(metering.update_sessions([world_["transaction_id"]]))
                    db.session.commit()
                finally:
                    db.session.remove()

        thread = threading.Thread(target=late_reading)
        thread.start()
        thread.join(timeout=1)
        assert thread.is_alive()  # waiting for the settlement's lock
        db.session.commit()
        thread.join(timeout=30)
        assert refreshed == {}
        db.session.expire_all()
        session = db.session.get(ChargingSession, world_["session_id"])
        assert (session.state, session.energy_wh, session.cost_minor) == ("completed", 1000, 25)
