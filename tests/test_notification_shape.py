"""The `notification` event in the replaced Node system's shape, in process: each named event's type,
the charger it is about, and the embedded mode's own path (in-process worker, the web process's
Socket.IO server) for a connector fault and a dead-lettered message."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from csms.extensions import socketio
from csms.realtime import device_of, notification, notification_type
from csms.services import tokens, users
from tests.builders import a_charge_point
from tests.support.exchanges import exchange

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.mark.parametrize(
    ("event", "data", "type_", "device"),
    [
        ("charging:started", {"chargePointId": "CP-1"}, "charging.started", "CP-1"),
        ("charging:stopped", {"sessionId": 3}, "charging.stopped", None),
        ("charger:status:changed", {"chargePointId": "CP-1"}, "charger.status.changed", "CP-1"),
        ("meter:values", {"chargePointId": "CP-1"}, "meter.values.updated", "CP-1"),
        ("command:result", {"chargePointId": "CP-1"}, "command.result", "CP-1"),
        ("error:occurred", {"chargePointId": None}, "error.occurred", None),
        ("charger:connection:changed", {"changes": []}, "charger.connection.changed", None),
        (
            "cms:changed",
            {"type": "cms.point.updated", "entity_type": "point", "entity_id": "CP-1"},
            "cms.point.updated",
            "CP-1",
        ),
        (
            "cms:changed",
            {"type": "cms.tariff.deleted", "entity_type": "tariff", "entity_id": "4"},
            "cms.tariff.deleted",
            None,
        ),
    ],
)
def test_each_event_is_named_as_the_replaced_system_named_it(event, data, type_, device):
    assert (notification_type(event, data), device_of(event, data)) == (type_, device)


def test_a_notification_is_the_seed_shape_with_a_utc_timestamp():
    before = datetime.now(UTC)
    built = notification("charging:started", {"chargePointId": "CP-1"}, 7, "CP-1")
    assert {k: v for k, v in built.items() if k != "timestamp"} == {
        "type": "charging.started",
        "chargerId": 7,
        "deviceId": "CP-1",
        "data": {"chargePointId": "CP-1"},
    }
    assert ISO_UTC.match(built["timestamp"])
    stamped = datetime.fromisoformat(built["timestamp"].replace("Z", "+00:00"))
    assert before - timedelta(milliseconds=1) <= stamped <= datetime.now(UTC)


def operator_client(app):
    operator = users.create_user("operator@example.test", "password-123", role="operator")
    identity = tokens.Identity(operator.id, "operator")  # a token serves an existing account only
    token = tokens.issue(identity, app.config["SECRET_KEY"], timedelta(minutes=5))
    client = socketio.test_client(app, auth={"token": token})
    assert client.is_connected()
    return client


def notifications_of(client) -> list[dict]:
    return [message["args"][0] for message in client.get_received() if message["name"] == "notification"]


def test_embedded_a_fault_and_a_dead_letter_reach_operators(app, worker):
    from actors.storage import record_exchanges

    point_id = a_charge_point(charge_point_id="EMB-1").id  # read before other sessions come and go
    client = operator_client(app)
    status = {"connectorId": 2, "errorCode": "OverCurrentFailure", "status": "Available"}
    record_exchanges.send([exchange("EMB-1", "StatusNotification", status, {})])
    poison = record_exchanges.send_with_options(
        args=([{"charge_point_id": "EMB-1", "frames": "not frames"}],), max_retries=0
    )
    worker.join()
    worker.join()  # the notify messages the first join's work queued
    heard = {(n["type"], n["data"].get("source")): n for n in notifications_of(client)}
    assert set(heard) >= {
        ("charger.status.changed", None),
        ("error.occurred", "charger"),
        ("error.occurred", "pipeline"),
    }
    for n in heard.values():
        assert (n["chargerId"], n["deviceId"]) == (point_id, "EMB-1")
    fault = heard[("error.occurred", "charger")]["data"]
    assert (fault["connectorId"], fault["status"], fault["errorCode"]) == (
        2,
        "Available",
        "OverCurrentFailure",
    )
    dead = heard[("error.occurred", "pipeline")]["data"]
    assert (dead["messageId"], dead["queue"], dead["actor"]) == (
        poison.message_id,
        "ocpp_messages",
        "record_exchanges",
    )
    client.disconnect()


def test_events_that_carry_both_ids_cost_no_lookup(app, monkeypatch):
    from sqlalchemy import event as sql_event

    from actors.notifications import emit_all
    from csms.extensions import db

    pk = a_charge_point(charge_point_id="IDS-1").id
    client = operator_client(app)
    statements: list[str] = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    sql_event.listen(db.engine, "before_cursor_execute", listener)
    try:
        emit_all([["meter:values", {"chargePointId": "IDS-1"}, ["operators"], pk]] * 3)
        assert statements == []
        emit_all([["charging:stopped", {"sessionId": 1}, ["operators"], pk]])
        assert len(statements) == 1
    finally:
        sql_event.remove(db.engine, "before_cursor_execute", listener)
    heard = notifications_of(client)
    assert [(n["type"], n["chargerId"], n["deviceId"]) for n in heard] == [
        ("meter.values.updated", pk, "IDS-1")
    ] * 3 + [("charging.stopped", pk, "IDS-1")]
    client.disconnect()
