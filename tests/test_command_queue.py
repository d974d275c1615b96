"""The command queue's rules (csms.services.command_queue) on SQLite and PostgreSQL, and its REST face
in process: queueing for an offline charger (202), reading, cancelling, and the inputs refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from csms.extensions import db
from csms.models import ChargerConnection, ClusterNode, QueuedCommand
from csms.models.command_queue import TRANSITIONS, CommandState
from csms.services import command_queue
from csms.services.errors import Conflict, NotFound
from tests.builders import a_charge_point
from tests.test_api import auth, error_of, token_for

NOW = datetime.now(UTC)  # at import: leases below run for a day, so a slow run never outlives them


def state_of(command_id: str) -> str:
    db.session.rollback()
    return db.session.scalar(select(QueuedCommand.state).where(QueuedCommand.command_id == command_id))


def queued(charge_point_id: str, action: str = "Reset", **options) -> str:
    command = command_queue.enqueue(charge_point_id, action, {"type": "Soft"}, **options)
    db.session.commit()
    return command.command_id


def age(command_id: str, **values) -> None:
    db.session.execute(update(QueuedCommand).where(QueuedCommand.command_id == command_id).values(**values))
    db.session.commit()


# --- the states -----------------------------------------------------------------------------------


def test_the_transitions_table_ends_in_final_states():
    assert {state: sorted(nexts) for state, nexts in TRANSITIONS.items()} == {
        "queued": ["cancelled", "expired", "sent"],
        "sent": ["answered", "failed"],
        "answered": [],
        "failed": [],
        "expired": [],
        "cancelled": [],
    }


def test_a_state_change_outside_the_table_is_refused(any_db_app):
    command_id = queued("CP-1")
    with pytest.raises(ValueError, match="cannot go from queued to answered"):
        command_queue._move(db.session, CommandState.QUEUED, CommandState.ANSWERED)
    claimed = command_queue.claim_next(db.session, "CP-1", "node-1")
    command_queue.record_answer(db.session, claimed.id, {"status": "Accepted"})
    command_queue.record_failure(db.session, claimed.id, "Timeout", "late")  # answered is final
    command = command_queue.get(command_id)
    assert (command.state, command.response, command.error) == ("answered", {"status": "Accepted"}, None)
    assert command.sent_at is not None and command.answered_at >= command.sent_at


def test_claims_go_in_order_once_and_never_hand_out_an_expired_command(any_db_app):
    first, stale, third = queued("CP-1"), queued("CP-1"), queued("CP-1")
    other = queued("CP-2")
    age(stale, expires_at=NOW - timedelta(seconds=1))
    claims = [command_queue.claim_next(db.session, "CP-1", "node-1") for _ in range(3)]
    assert [c and c.command_id for c in claims] == [first, third, None]
    assert [state_of(c) for c in (first, stale, third, other)] == ["sent", "expired", "sent", "queued"]
    sent = db.session.scalar(select(QueuedCommand).where(QueuedCommand.command_id == first))
    assert (sent.node_id, sent.sent_at is not None) == ("node-1", True)
    assert command_queue.claim_next(db.session, "CP-2", "node-2").command_id == other


def test_a_cancelled_command_is_never_claimed_and_cancelling_twice_is_a_conflict(any_db_app):
    command_id = queued("CP-1")
    cancelled = command_queue.cancel(command_id)
    assert (cancelled.state, cancelled.cancelled_at is not None) == ("cancelled", True)
    assert command_queue.claim_next(db.session, "CP-1", "node-1") is None
    with pytest.raises(Conflict) as refused:
        command_queue.cancel(command_id)
    assert (refused.value.code, refused.value.details) == ("command_not_queued", {"state": "cancelled"})
    with pytest.raises(NotFound):
        command_queue.cancel("no-such-command")


def test_a_command_past_its_expiry_cannot_be_cancelled_it_expired(any_db_app):
    command_id = queued("CP-1", ttl_seconds=60)
    age(command_id, expires_at=NOW - timedelta(seconds=1))
    with pytest.raises(Conflict) as refused:
        command_queue.cancel(command_id)
    assert refused.value.details == {"state": "expired"}
    assert state_of(command_id) == "expired"


def test_the_sweep_expires_only_what_is_due(any_db_app):
    due, fresh = queued("CP-1"), queued("CP-1")
    age(due, expires_at=NOW - timedelta(seconds=1))
    assert command_queue.expire_due(db.session) == 1
    db.session.commit()
    assert (state_of(due), state_of(fresh)) == ("expired", "queued")


def test_the_ttl_sets_the_expiry_and_is_bounded(any_db_app):
    command = command_queue.enqueue("CP-1", "Reset", {"type": "Soft"}, ttl_seconds=120, requested_by=None)
    assert command.expires_at - command.created_at == timedelta(seconds=120)
    for bad in (0, 604801):
        with pytest.raises(ValueError):
            command_queue.enqueue("CP-1", "Reset", {"type": "Soft"}, ttl_seconds=bad)


def test_the_csms_requests_a_call_once_per_key(any_db_app):
    payload = {"transactionId": 5}
    assert command_queue.request("session:1:remote-stop", "CP-1", "RemoteStopTransaction", payload, "used up")
    assert not command_queue.request(
        "session:1:remote-stop", "CP-1", "RemoteStopTransaction", payload, "again"
    )
    db.session.commit()
    row = db.session.scalars(select(QueuedCommand)).one()
    assert (row.state, row.reason, row.requested_by, row.payload) == ("queued", "used up", None, payload)
    assert row.expires_at - row.created_at == timedelta(days=7)


def test_a_node_sweeps_only_the_chargers_it_holds(any_db_app):
    db.session.add(ClusterNode(node_id="node-1", expires_at=NOW + timedelta(days=1)))
    db.session.add(
        ChargerConnection(charge_point_id="CP-HERE", node_id="node-1", connection_id="c1", since=NOW)
    )
    db.session.add(
        ChargerConnection(charge_point_id="CP-THERE", node_id="node-2", connection_id="c2", since=NOW)
    )
    db.session.commit()
    for charge_point_id in ("CP-HERE", "CP-HERE", "CP-THERE", "CP-OFFLINE"):
        queued(charge_point_id)
    assert command_queue.waiting_on_node(db.session, "node-1") == ["CP-HERE"]
    assert command_queue.waiting_on_node(db.session, "node-3") == []


def test_a_command_sent_by_a_node_that_died_or_restarted_fails_and_is_never_sent_again(any_db_app):
    db.session.add(
        ClusterNode(node_id="alive", started_at=NOW - timedelta(hours=1), expires_at=NOW + timedelta(days=1))
    )
    db.session.add(
        ClusterNode(
            node_id="dead", started_at=NOW - timedelta(hours=1), expires_at=NOW - timedelta(seconds=1)
        )
    )
    db.session.add(ClusterNode(node_id="restarted", started_at=NOW, expires_at=NOW + timedelta(days=1)))
    db.session.commit()
    sent = {}
    for node in ("alive", "dead", "restarted"):
        sent[node] = queued(f"CP-{node}")
        command_queue.claim_next(db.session, f"CP-{node}", node)
        age(sent[node], sent_at=NOW - timedelta(minutes=1))
    assert command_queue.fail_orphaned(db.session) == 2
    db.session.commit()
    assert {node: state_of(c) for node, c in sent.items()} == {
        "alive": "sent",
        "dead": "failed",
        "restarted": "failed",
    }
    assert command_queue.get(sent["dead"]).error["code"] == "NodeLost"


# --- REST -----------------------------------------------------------------------------------------


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def operator(client):
    return auth(token_for(client, "op@example.test", "operator"))


@pytest.fixture
def charger(app):
    point = a_charge_point(charge_point_id="CP-Q")
    db.session.commit()
    return point.charge_point_id


def rows() -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(QueuedCommand))


@pytest.mark.parametrize(
    ("path", "body", "action", "payload"),
    [
        ("/api/charger/reset", {"type": "Hard"}, "Reset", {"type": "Hard"}),
        ("/api/charger/remote-start", {"idTag": "T1"}, "RemoteStartTransaction", {"idTag": "T1"}),
        ("/api/charger/remote-stop", {"transactionId": 7}, "RemoteStopTransaction", {"transactionId": 7}),
        (
            "/api/charger/change-configuration",
            {"key": "HeartbeatInterval", "value": "60"},
            "ChangeConfiguration",
            {"key": "HeartbeatInterval", "value": "60"},
        ),
        (
            "/api/charger/command",
            {"action": "UnlockConnector", "payload": {"connectorId": 1}},
            "UnlockConnector",
            {"connectorId": 1},
        ),
    ],
)
def test_every_command_route_queues_for_an_offline_charger(
    client, operator, charger, path, body, action, payload
):
    response = client.post(path, json={"deviceId": charger, "offline": "queue", **body}, headers=operator)
    assert response.status_code == 202, response.get_json()
    queued_body = response.get_json()
    created = datetime.fromisoformat(queued_body["createdAt"])
    assert queued_body == {
        "commandId": queued_body["commandId"],
        "chargePointId": charger,
        "action": action,
        "payload": payload,
        "state": "queued",
        "response": None,
        "error": None,
        "createdAt": queued_body["createdAt"],
        "expiresAt": (created + timedelta(seconds=3600)).isoformat(),
        "sentAt": None,
        "answeredAt": None,
        "cancelledAt": None,
    }
    read = client.get(f"/api/charger/commands/{queued_body['commandId']}", headers=operator)
    assert (read.status_code, read.get_json()) == (200, queued_body)


def test_without_offline_queue_an_offline_charger_is_409_and_nothing_is_queued(client, operator, charger):
    response = client.post("/api/charger/reset", json={"deviceId": charger}, headers=operator)
    assert (response.status_code, error_of(response)["code"]) == (409, "charger_offline")
    assert rows() == 0


def test_what_cannot_be_queued_is_refused_as_without_queueing(client, operator, charger):
    unknown = client.post(
        "/api/charger/reset", json={"deviceId": "NOPE", "offline": "queue"}, headers=operator
    )
    assert (unknown.status_code, error_of(unknown)["code"]) == (404, "charge_point_not_found")
    invalid = client.post(
        "/api/charger/command",
        json={"deviceId": charger, "offline": "queue", "action": "Reset", "payload": {"type": "Sideways"}},
        headers=operator,
    )
    assert invalid.status_code == 422, invalid.get_json()
    assert rows() == 0


@pytest.mark.parametrize(
    "options",
    [
        {"offline": "queue", "ttlSeconds": 0},
        {"offline": "queue", "ttlSeconds": 604801},
        {"offline": "queue", "ttlSeconds": "60"},
        {"offline": "queue", "ttlSeconds": 1.5},
        {"offline": "queue", "ttlSeconds": None},
        {"offline": "later"},
        {"offline": True},
        {"offline": None},
    ],
)
def test_bad_offline_options_are_422(client, operator, charger, options):
    response = client.post("/api/charger/reset", json={"deviceId": charger, **options}, headers=operator)
    assert (response.status_code, error_of(response)["code"]) == (422, "validation_error"), (
        response.get_json()
    )
    assert rows() == 0


def test_the_longest_ttl_is_seven_days(client, operator, charger):
    response = client.post(
        "/api/charger/reset",
        json={"deviceId": charger, "offline": "queue", "ttlSeconds": 604800},
        headers=operator,
    )
    body = response.get_json()
    assert response.status_code == 202
    expiry = datetime.fromisoformat(body["expiresAt"]) - datetime.fromisoformat(body["createdAt"])
    assert expiry == timedelta(days=7)


def test_an_operator_cancels_a_queued_command_once(client, operator, charger):
    queued_body = client.post(
        "/api/charger/reset", json={"deviceId": charger, "offline": "queue"}, headers=operator
    ).get_json()
    path = f"/api/charger/commands/{queued_body['commandId']}"
    cancelled = client.delete(path, headers=operator)
    body = cancelled.get_json()
    assert cancelled.status_code == 200
    assert body == {**queued_body, "state": "cancelled", "cancelledAt": body["cancelledAt"]}
    assert datetime.fromisoformat(body["cancelledAt"]) >= datetime.fromisoformat(body["createdAt"])
    again = client.delete(path, headers=operator)
    assert (again.status_code, error_of(again)["code"], error_of(again)["details"]) == (
        409,
        "command_not_queued",
        {"state": "cancelled"},
    )
    assert client.get(path, headers=operator).get_json() == body


def test_unknown_commands_are_404_and_customers_403(client, operator, charger):
    for method in (client.get, client.delete):
        response = method("/api/charger/commands/no-such-command", headers=operator)
        assert (response.status_code, error_of(response)["code"]) == (404, "command_not_found")
    command_id = queued(charger)
    customer = auth(token_for(client, "cu@example.test"))
    assert client.get(f"/api/charger/commands/{command_id}", headers=customer).status_code == 403
    assert client.delete(f"/api/charger/commands/{command_id}", headers=customer).status_code == 403
    assert state_of(command_id) == "queued"


def test_the_queue_is_documented(client):
    spec = client.get("/api/openapi.json").get_json()
    paths = spec["paths"]
    assert set(paths["/api/charger/commands/{command_id}"]) >= {"get", "delete"}
    reset = paths["/api/charger/reset"]["post"]
    assert {"200", "202", "409"} <= set(reset["responses"])
    body_schema = reset["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    properties = spec["components"]["schemas"][body_schema]["properties"]
    assert properties["offline"]["enum"] == ["queue"]
    assert (properties["ttlSeconds"]["minimum"], properties["ttlSeconds"]["maximum"]) == (1, 604800)
