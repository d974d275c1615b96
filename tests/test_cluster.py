"""Issue #15: two real web nodes and a worker on one PostgreSQL database and one RabbitMQ broker, a
charger on one node and REST requests on the other: every command route reaches the charger across
nodes with the same answers, presence is the same on both, one outstanding call per charger holds
across nodes, a reconnection elsewhere moves the charger, and a node killed outright fails its calls
in flight at their timeout and lets go of its chargers within two ping intervals."""

from __future__ import annotations

import json
import time

import pytest
from websockets.exceptions import ConnectionClosed

from tests.support.chargers import RawCharger
from tests.support.cluster import operator_on, two_nodes
from tests.support.deployment import AUTH_KEY
from tests.support.http import Http
from tests.support.processes import wait_until
from tests.test_api_charging import answer_while, in_background

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.rabbitmq]

PING = 2  # seconds: a killed node's chargers lapse within two of these
CALL_TIMEOUT = 3
ENV = {
    "CSMS_BOOT_CONFIGURATION": "",
    "CSMS_PING_INTERVAL": str(PING),
    "CSMS_CALL_TIMEOUT": str(CALL_TIMEOUT),
    "CSMS_SECRET_KEY": "cluster-test-secret-key-0123456789-abcdef",
}
CHARGERS = [f"CL-{n}" for n in range(1, 11)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, postgres_databases, rabbitmq_url):
    with two_nodes(
        tmp_path_factory.mktemp("cluster"), postgres_databases, rabbitmq_url, ENV, CHARGERS
    ) as csms:
        yield csms


def connection(http: Http, charge_point_id: str) -> dict:
    status, point = http("GET", f"/api/cms/points/{charge_point_id}")
    assert status == 200, point
    return point["connection"]


def held_by(http: Http, charge_point_id: str, node_id: str) -> bool:
    found = connection(http, charge_point_id)
    return found["connected"] and found["node"] == node_id


COMMANDS = [
    ("/api/charger/remote-start", {"idTag": "T1", "connectorId": 2}, "RemoteStartTransaction"),
    ("/api/charger/remote-stop", {"transactionId": 77}, "RemoteStopTransaction"),
    ("/api/charger/change-configuration", {"key": "HeartbeatInterval", "value": "60"}, "ChangeConfiguration"),
    ("/api/charger/reset", {"type": "Hard"}, "Reset"),
    ("/api/charger/command", {"action": "UnlockConnector", "payload": {"connectorId": 1}}, "UnlockConnector"),
]


def test_every_command_route_on_another_node_returns_the_charger_reply(cluster):
    node_a, node_b = cluster.nodes
    http = operator_on(node_b)
    answers = {
        "RemoteStartTransaction": {"status": "Accepted"},
        "RemoteStopTransaction": {"status": "Rejected"},
        "ChangeConfiguration": {"status": "RebootRequired"},
        "Reset": {"status": "Accepted"},
        "UnlockConnector": {"status": "Unlocked"},
    }
    with RawCharger(node_a.ws_url, "CL-1", AUTH_KEY, answers=answers) as cp:
        cp.boot()
        assert wait_until(lambda: held_by(http, "CL-1", "production-test-1"), timeout=10)
        for path, body, action in COMMANDS:
            thread, result = in_background(http, "POST", path, {"deviceId": "CL-1", **body})
            answer_while(cp, thread)
            assert result["value"] == (
                200,
                {"deviceId": "CL-1", "action": action, "response": answers[action]},
            )
        # an invalid answer ({} to ClearCache: status required) is a 502 across nodes too, an invalid
        # payload a 422 (nothing sent)
        cp.answers = {}
        thread, result = in_background(
            http, "POST", "/api/charger/command", {"deviceId": "CL-1", "action": "ClearCache", "payload": {}}
        )
        answer_while(cp, thread)
        assert result["value"][0] == 502 and result["value"][1]["error"]["code"] == "charger_error"
        status, body = http("POST", "/api/charger/reset", {"deviceId": "CL-1", "type": "Sideways"})
        assert status == 422, body
        cp.call("Heartbeat", {})
    assert [c[2] for c in cp.received_calls] == [action for _, _, action in COMMANDS] + ["ClearCache"]

    def audited() -> list:
        """In the order requested: workers store audits in batches, not in id order."""
        items = http("GET", "/api/charger/commands?chargePointId=CL-1&perPage=50")[1]["items"]
        return [(i["action"], i["outcome"]) for i in sorted(items, key=lambda i: i["requestedAt"])]

    expected = [(action, "answered") for _, _, action in COMMANDS] + [("ClearCache", "invalid")]
    assert wait_until(lambda: audited() == expected, timeout=20), audited()  # each audited once


def test_presence_is_the_same_on_every_node(cluster):
    node_a, node_b = cluster.nodes
    on_a, on_b = operator_on(node_a), operator_on(node_b)
    with RawCharger(node_b.ws_url, "CL-2", AUTH_KEY) as cp:
        cp.boot()
        assert wait_until(lambda: held_by(on_a, "CL-2", "production-test-2"), timeout=10)
        seen_on_a, seen_on_b = connection(on_a, "CL-2"), connection(on_b, "CL-2")
        assert seen_on_a["since"] == seen_on_b["since"] is not None
        assert seen_on_b["lastMessageAt"] is not None and seen_on_a["lastMessageAt"] is None
        for http in (on_a, on_b):
            connected = http("GET", "/api/cms/points?connected=true&perPage=500")[1]["items"]
            offline = http("GET", "/api/cms/points?connected=false&perPage=500")[1]["items"]
            assert "CL-2" in {p["chargePointId"] for p in connected}
            assert "CL-2" not in {p["chargePointId"] for p in offline}
            assert all(p["connection"]["connected"] for p in connected)
            assert not any(p["connection"]["connected"] for p in offline)
        assert on_a("GET", "/api/cms/points?connected=maybe")[0] == 422
        health = [Http(node.base_url)("GET", "/healthz")[1] for node in cluster.nodes]
        assert [h["node"] for h in health] == ["production-test-1", "production-test-2"]
        assert [(h["cluster"]["bus"], h["cluster"]["announcements"]) for h in health] == [("ok", "ok")] * 2
        assert health[0]["cluster"]["queue"] != health[1]["cluster"]["queue"]
    assert wait_until(lambda: not connection(on_a, "CL-2")["connected"], timeout=10)
    assert connection(on_b, "CL-2") == {
        "connected": False,
        "node": None,
        "since": None,
        "connectedSince": None,
        "lastMessageAt": None,
    }


def test_one_outstanding_call_per_charger_across_nodes(cluster):
    node_a, node_b = cluster.nodes
    with RawCharger(node_a.ws_url, "CL-3", AUTH_KEY) as cp:
        cp.boot()
        assert wait_until(lambda: held_by(operator_on(node_b), "CL-3", "production-test-1"), timeout=10)
        calls = [
            in_background(operator_on(node), "POST", "/api/charger/reset", {"deviceId": "CL-3", "type": kind})
            for node, kind in ((node_b, "Soft"), (node_a, "Hard"), (node_b, "Soft"))
        ]
        received = []
        for _ in calls:
            frame = json.loads(cp.ws.recv(timeout=10))
            received.append(frame[3]["type"])
            with pytest.raises(TimeoutError):  # nothing else is sent while this call is unanswered
                cp.ws.recv(timeout=0.5)
            cp.ws.send(json.dumps([3, frame[1], {"status": "Accepted"}]))
        for thread, result in calls:
            thread.join(timeout=10)
            assert result["value"][0] == 200, result
    assert sorted(received) == ["Hard", "Soft", "Soft"]


def test_a_reconnection_on_another_node_moves_the_charger_and_closes_the_old_socket(cluster):
    node_a, node_b = cluster.nodes
    on_a = operator_on(node_a)
    old = RawCharger(node_a.ws_url, "CL-4", AUTH_KEY)
    old.boot()
    assert wait_until(lambda: held_by(on_a, "CL-4", "production-test-1"), timeout=10)
    with RawCharger(node_b.ws_url, "CL-4", AUTH_KEY, answers={"Reset": {"status": "Accepted"}}) as new:
        new.boot()
        started = time.monotonic()
        with pytest.raises(ConnectionClosed):
            old.ws.recv(timeout=10)
        assert time.monotonic() - started < 5
        assert wait_until(lambda: held_by(on_a, "CL-4", "production-test-2"), timeout=5)
        thread, result = in_background(on_a, "POST", "/api/charger/reset", {"deviceId": "CL-4"})
        answer_while(new, thread)
        assert result["value"] == (
            200,
            {"deviceId": "CL-4", "action": "Reset", "response": {"status": "Accepted"}},
        )
    old.close()


def test_a_killed_node_fails_calls_in_flight_at_their_timeout_and_lets_go_of_its_chargers(
    tmp_path, postgres_databases, rabbitmq_url
):
    with two_nodes(tmp_path, postgres_databases, rabbitmq_url, ENV, CHARGERS[:2]) as csms:
        node_a, node_b = csms.nodes
        on_b = operator_on(node_b)
        silent = RawCharger(node_a.ws_url, "CL-1", AUTH_KEY)
        silent.boot()
        assert wait_until(lambda: held_by(on_b, "CL-1", "production-test-1"), timeout=10)
        started = time.monotonic()
        thread, result = in_background(on_b, "POST", "/api/charger/reset", {"deviceId": "CL-1"})
        json.loads(silent.ws.recv(timeout=10))  # the call reached the charger on A: it is in flight
        node_a.kill_hard()
        killed = time.monotonic()
        # a new call meanwhile finds the node's queue gone with it (RabbitMQ saw its connection drop):
        # offline at once, not at a timeout
        time.sleep(0.5)
        status, body = on_b("POST", "/api/charger/reset", {"deviceId": "CL-1"})
        assert (status, body["error"]["code"]) == (409, "charger_offline")
        assert time.monotonic() - killed < 2
        thread.join(timeout=CALL_TIMEOUT + 10)
        assert not thread.is_alive()
        status, body = result["value"]
        assert (status, body["error"]["code"]) == (504, "charger_timeout")
        assert time.monotonic() - started < CALL_TIMEOUT + 3
        assert wait_until(lambda: not connection(on_b, "CL-1")["connected"], timeout=2 * PING + 2)
        assert time.monotonic() - killed <= 2 * PING + 2  # the lease (1.5 pings), its sweep, and a loaded CI
        assert (
            on_b("POST", "/api/charger/reset", {"deviceId": "CL-1"})[1]["error"]["code"] == "charger_offline"
        )
        silent.close()
        with RawCharger(node_b.ws_url, "CL-1", AUTH_KEY, answers={"Reset": {"status": "Accepted"}}) as back:
            back.boot()
            thread, result = in_background(on_b, "POST", "/api/charger/reset", {"deviceId": "CL-1"})
            answer_while(back, thread)
            assert result["value"][0] == 200, result
