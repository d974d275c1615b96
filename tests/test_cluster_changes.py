"""Changes made on one node of a cluster hold on every node at once (issue #15, "Cluster-wide
changes"): two real web processes on one PostgreSQL database, chargers over real WebSockets, REST on
one node, `flask` commands as separate processes, and what the other node decides right after.

"At once" is when PostgreSQL has delivered the change's notification to the other node: well under
a millisecond, tens on a busy machine. The nodes cache for CSMS_AUTH_CACHE_SECONDS (60 s here), so
a decision that changes within `SOON` seconds was changed by the announcement, not by the cache's
time running out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import timedelta

import pytest
import socketio
from websockets.exceptions import InvalidStatus

from csms.services import id_tags, tokens, users
from tests.support.chargers import RawCharger
from tests.support.deployment import AUTH_KEY, deployment
from tests.support.processes import ROOT, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.rabbitmq]

OPERATOR = ("ops@example.test", "operator-password")
SECRET = "cluster-test-secret-0123456789abcdef"
NEW_KEY = "new-key-0123456789abc"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, postgres_databases, rabbitmq_url):
    """Two web nodes (no worker: nothing here waits for one). The nodes trust X-Forwarded-For from
    127.0.0.1, so each login test is a client of its own."""
    with deployment(
        "production",
        tmp_path_factory.mktemp("cluster"),
        database_url=postgres_databases(),
        rabbitmq_url=rabbitmq_url,
        with_worker=False,
        web_nodes=2,
        env={"CSMS_TRUSTED_PROXIES": "127.0.0.1", "CSMS_SECRET_KEY": SECRET},
        charge_points={
            "KEYED-1": AUTH_KEY,
            "DOOMED-1": AUTH_KEY,
            "TAGS-1": AUTH_KEY,
            "MOVER-1": AUTH_KEY,
            "STAY-1": AUTH_KEY,
        },
        customers={"ada@example.test": ("CLUSTER-TAG", 0)},
        operators=dict([OPERATOR]),
    ) as csms:
        yield csms


def request(node, method: str, path: str, body: dict | None = None, token: str | None = None, client=None):
    """(status, JSON body) of a request to `node`; `client` is the address a trusted proxy names."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if client:
        headers["X-Forwarded-For"] = client
    data = json.dumps(body).encode() if body is not None else None
    call = urllib.request.Request(f"{node.base_url}{path}", data, headers, method=method)
    try:
        with urllib.request.urlopen(call, timeout=30) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture(scope="module")
def operator_token(cluster):
    status, body = request(
        cluster.nodes[1], "POST", "/api/auth/login", {"email": OPERATOR[0], "password": OPERATOR[1]}
    )
    assert status == 200, body
    return body["access_token"]


SOON = 2.0


def soon(decide, expected) -> bool:
    """Whether `decide()` gives `expected` within `SOON` seconds (the first time, as a rule)."""
    deadline = time.monotonic() + SOON
    while (decided := decide()) != expected and time.monotonic() < deadline:
        time.sleep(0.005)
    return decided == expected


def handshake(node, charge_point_id: str, key: str) -> int:
    """101 when `node` lets the charger in (it boots and is accepted), else the refusal's status."""
    try:
        charger = RawCharger(node.ws_url, charge_point_id, key)
    except InvalidStatus as refused:
        return refused.response.status_code
    with charger:
        assert charger.boot()[2]["status"] == "Accepted"
    return 101


def flask_cli(cluster, *args: str) -> str:
    """`flask --app wsgi <args>` as ops would run it: another process on the cluster's database."""
    env = {**os.environ, **cluster.env, "CSMS_NODE_ID": "cli"}
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_a_charger_created_on_one_node_connects_to_the_other_at_once(cluster, operator_token):
    a, b = cluster.nodes
    assert handshake(a, "NEW-REST-1", AUTH_KEY) == 404  # node A now caches it as unknown
    assert handshake(a, "NEW-REST-1", AUTH_KEY) == 404
    body = {"chargePointId": "NEW-REST-1", "authKey": AUTH_KEY, "connectors": 1}
    assert request(b, "POST", "/api/cms/points", body, operator_token)[0] == 201
    assert soon(lambda: handshake(a, "NEW-REST-1", AUTH_KEY), 101)


def test_chargers_added_and_imported_by_the_cli_connect_at_once(cluster, tmp_path):
    a, b = cluster.nodes
    for node, charge_point_id in ((a, "NEW-CLI-1"), (b, "NEW-CLI-1"), (a, "FLEET-1"), (b, "FLEET-2")):
        assert handshake(node, charge_point_id, AUTH_KEY) == 404
    assert flask_cli(cluster, "charger", "add", "NEW-CLI-1", "--auth-key", AUTH_KEY).startswith(
        "registered NEW-CLI-1\n"
    )
    assert soon(lambda: [handshake(node, "NEW-CLI-1", AUTH_KEY) for node in (a, b)], [101, 101])
    fleet = tmp_path / "fleet.csv"
    fleet.write_text(f"chargePointId,authKey\nFLEET-1,{AUTH_KEY}\nFLEET-2,{AUTH_KEY}\n")
    assert (
        flask_cli(cluster, "charger", "import", str(fleet)) == "imported 2 charger(s), skipped 0 existing\n"
    )
    assert soon(
        lambda: [handshake(node, cp, AUTH_KEY) for node in (a, b) for cp in ("FLEET-1", "FLEET-2")], [101] * 4
    )


def test_a_key_changed_on_one_node_holds_on_the_other_at_once(cluster, operator_token):
    a, b = cluster.nodes
    assert handshake(a, "KEYED-1", AUTH_KEY) == 101  # node A now knows the key
    status, body = request(b, "PATCH", "/api/cms/points/KEYED-1", {"authKey": NEW_KEY}, operator_token)
    assert (status, body["chargePointId"]) == (200, "KEYED-1")
    assert soon(lambda: handshake(a, "KEYED-1", AUTH_KEY), 401)
    assert handshake(a, "KEYED-1", NEW_KEY) == 101
    status, _ = request(
        b, "PATCH", "/api/cms/points/KEYED-1", {"registrationStatus": "Rejected"}, operator_token
    )
    assert status == 200

    def boot_status() -> str:
        with RawCharger(a.ws_url, "KEYED-1", NEW_KEY) as charger:
            return charger.boot()[2]["status"]

    assert soon(boot_status, "Rejected")


def test_a_charger_deleted_on_one_node_cannot_connect_to_the_other(cluster, operator_token):
    a, b = cluster.nodes
    assert handshake(a, "DOOMED-1", AUTH_KEY) == 101
    assert request(b, "DELETE", "/api/cms/points/DOOMED-1", token=operator_token)[0] == 204
    assert soon(lambda: handshake(a, "DOOMED-1", AUTH_KEY), 404)


def test_an_id_tag_changed_anywhere_is_decided_so_by_every_node_at_once(cluster):
    a, _ = cluster.nodes
    with RawCharger(a.ws_url, "TAGS-1", AUTH_KEY) as charger:
        charger.boot()

        def authorize() -> dict:
            return charger.call("Authorize", {"idTag": "CLUSTER-TAG"})[2]["idTagInfo"]

        assert authorize() == {"status": "Accepted"}  # node A caches the decision
        assert flask_cli(cluster, "idtag", "set", "CLUSTER-TAG", "--status", "Blocked") == (
            "idTag CLUSTER-TAG: Blocked, expires none\n"
        )
        assert soon(authorize, {"status": "Blocked"})
        app = cluster.app()  # the service, called from this process as a node would
        with app.app_context():
            id_tags.update("CLUSTER-TAG", status="Accepted")
        assert soon(authorize, {"status": "Accepted"})
        assert charger.call("Authorize", {"idTag": "LATE-TAG"})[2]["idTagInfo"] == {"status": "Invalid"}
        with app.app_context():
            users.create_user("late@example.test", "password-123", id_tag="LATE-TAG")
        assert soon(
            lambda: charger.call("Authorize", {"idTag": "LATE-TAG"})[2]["idTagInfo"], {"status": "Accepted"}
        )


def test_failed_logins_spread_over_both_nodes_meet_the_limits_of_one(cluster):
    nodes = cluster.nodes
    client = "203.0.113.10"

    def login(node, email: str, password: str):
        return request(node, "POST", "/api/auth/login", {"email": email, "password": password}, client=client)

    for n in range(5):  # five wrong passwords for one account, alternating between the nodes
        assert login(nodes[n % 2], "ada@example.test", "wrong-password")[0] == 401
    for node in nodes:  # the sixth try waits, on either node, even with the right password
        status, body = login(node, "ada@example.test", "password-123")
        assert (status, body["error"]["details"]) == (429, {"retryAfter": 1})
    assert login(nodes[0], "ada@example.test", "password-123")[0] == 429
    time.sleep(1.1)
    assert login(nodes[1], "ada@example.test", "password-123")[0] == 200
    # another client is not slowed down by these failures
    assert (
        request(
            nodes[0], "POST", "/api/auth/login", {"email": "ada@example.test", "password": "password-123"}
        )[0]
        == 200
    )


def test_the_address_ceiling_counts_failures_from_every_node(tmp_path, postgres_databases, rabbitmq_url):
    with deployment(
        "production",
        tmp_path,
        database_url=postgres_databases(),
        rabbitmq_url=rabbitmq_url,
        with_worker=False,
        web_nodes=2,
        env={"CSMS_LOGIN_FAILURES_PER_ADDRESS": "6"},
        customers={"ada@example.test": ("ADA-1", 0)},
    ) as csms:
        nodes = csms.nodes
        for n in range(6):  # six accounts, one wrong password each, three on each node
            body = {"email": f"guess-{n}@example.test", "password": "wrong-password"}
            assert request(nodes[n % 2], "POST", "/api/auth/login", body)[0] == 401
        for node in nodes:
            status, body = request(
                node, "POST", "/api/auth/login", {"email": "ada@example.test", "password": "password-123"}
            )
            assert status == 429 and 890 <= body["error"]["details"]["retryAfter"] <= 900, body


def test_dashboards_on_every_node_see_the_cluster_s_presence(cluster):
    """Node A's dashboards hear of a charger connecting to node B, with the cluster's count; when the
    charger moves to A, B closes its old socket but does not report it offline."""
    a, b = cluster.nodes
    operator_id = cluster.scalar("SELECT id FROM users WHERE role = 'operator'")
    token = tokens.issue(tokens.Identity(operator_id, "operator"), SECRET, timedelta(minutes=5))
    heard: list[dict] = []
    dashboard = socketio.Client(reconnection=False)
    dashboard.on("charger:connection:changed", heard.append)
    dashboard.connect(a.base_url, auth={"token": token}, wait_timeout=10)
    staying = RawCharger(a.ws_url, "STAY-1", AUTH_KEY)
    try:
        staying.boot()
        time.sleep(0.5)  # node A has written that it holds STAY-1
        on_b = RawCharger(b.ws_url, "MOVER-1", AUTH_KEY)
        on_b.boot()
        assert wait_until(lambda: any(e["node"] == "production-test-2" for e in heard), timeout=10), heard
        first = next(e for e in heard if e["node"] == "production-test-2")
        assert [c for c in first["changes"] if c["chargePointId"] == "MOVER-1"] == [
            {"chargePointId": "MOVER-1", "connected": True}
        ]
        assert first["online"] == 2  # the cluster's count (STAY-1 on A, MOVER-1 on B), seen from node B
        with RawCharger(a.ws_url, "MOVER-1", AUTH_KEY) as on_a:
            on_a.boot()

            def mover() -> list[tuple[str, bool]]:
                return [
                    (e["node"], c["connected"])
                    for e in heard
                    for c in e["changes"]
                    if c["chargePointId"] == "MOVER-1"
                ]

            assert wait_until(lambda: len(mover()) >= 2, timeout=10), heard
            closing = "MOVER-1 reconnected on node production-test-1; closing this older connection"
            assert wait_until(lambda: closing in b.log(), timeout=10)
            time.sleep(2.5)  # node B had its second to report the older socket's end, and did not
            assert mover() == [("production-test-2", True), ("production-test-1", True)]
        on_b.close()
    finally:
        staying.close()
        dashboard.disconnect()
