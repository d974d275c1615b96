"""Issue #15, the offline command queue in production mode: two real web nodes and a worker on one
PostgreSQL database and RabbitMQ. Commands queued on one node for an offline charger go out once, in
order, when the charger boots on the other; they survive the SIGKILL of the node that queued them;
an expired or cancelled one never goes out; and a thousand commands waiting for offline chargers do
not delay one for an online charger."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert

from csms.extensions import db
from csms.models import QueuedCommand
from csms.services import command_queue
from tests.support.chargers import RawCharger
from tests.support.cluster import operator_on, two_nodes
from tests.support.deployment import AUTH_KEY
from tests.support.http import Http
from tests.support.processes import wait_until
from tests.test_command_delivery import calls_within

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.rabbitmq]

PING = 2
ENV = {
    "CSMS_BOOT_CONFIGURATION": "",
    "CSMS_PING_INTERVAL": str(PING),
    "CSMS_CALL_TIMEOUT": "3",
    "CSMS_DISPATCH_INTERVAL": "0.5",
    "CSMS_SECRET_KEY": "queue-test-secret-key-0123456789-abcdef",
}
CHARGERS = [f"CQ-{n}" for n in range(1, 9)]
ANSWERS = {
    "Reset": {"status": "Accepted"},
    "RemoteStartTransaction": {"status": "Accepted"},
    "RemoteStopTransaction": {"status": "Accepted"},
    "ChangeConfiguration": {"status": "Accepted"},
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, postgres_databases, rabbitmq_url):
    with two_nodes(
        tmp_path_factory.mktemp("queue-cluster"), postgres_databases, rabbitmq_url, ENV, CHARGERS
    ) as csms:
        yield csms


def queue(http: Http, path: str, body: dict) -> dict:
    status, reply = http("POST", path, {"offline": "queue", **body})
    assert (status, reply.get("state")) == (202, "queued"), reply
    return reply


def command(http: Http, command_id: str) -> dict:
    status, body = http("GET", f"/api/charger/commands/{command_id}")
    assert status == 200, body
    return body


def in_state(http: Http, command_id: str, state: str, timeout: float = 10) -> dict:
    assert wait_until(lambda: command(http, command_id)["state"] == state, timeout=timeout), command(
        http, command_id
    )
    return command(http, command_id)


def test_commands_queued_on_one_node_go_out_once_in_order_when_the_charger_boots_on_the_other(cluster):
    node_a, node_b = cluster.nodes
    on_a, on_b = operator_on(node_a), operator_on(node_b)
    sent = [
        ("/api/charger/reset", {"type": "Soft"}, ["Reset", {"type": "Soft"}]),
        ("/api/charger/remote-start", {"idTag": "T1"}, ["RemoteStartTransaction", {"idTag": "T1"}]),
        (
            "/api/charger/change-configuration",
            {"key": "HeartbeatInterval", "value": "60"},
            ["ChangeConfiguration", {"key": "HeartbeatInterval", "value": "60"}],
        ),
    ]
    ids = [queue(on_a, path, {"deviceId": "CQ-1", **body})["commandId"] for path, body, _ in sent]
    assert [command(on_b, i)["state"] for i in ids] == ["queued"] * 3

    with RawCharger(node_b.ws_url, "CQ-1", AUTH_KEY, answers=ANSWERS) as charger:
        assert calls_within(charger, 1, 1.0) == []  # not booted yet
        charger.boot()
        assert calls_within(charger, 3, 10) == [call for _, _, call in sent]
        done = [in_state(on_a, i, "answered") for i in ids]
    assert [d["response"] for d in done] == [{"status": "Accepted"}] * 3
    assert all(d["createdAt"] < d["sentAt"] <= d["answeredAt"] for d in done), done
    assert [d["sentAt"] for d in done] == sorted(d["sentAt"] for d in done)
    assert cluster.rows("SELECT DISTINCT node_id FROM queued_commands WHERE charge_point_id = 'CQ-1'") == [
        ("production-test-2",)
    ]

    with RawCharger(node_a.ws_url, "CQ-1", AUTH_KEY, answers=ANSWERS) as again:
        again.boot()
        assert calls_within(again, 1, 1.5) == []  # once: not again on the next connection

    def audited():
        _, page = on_b("GET", "/api/charger/commands?chargePointId=CQ-1")
        return sorted((i["action"], i["outcome"]) for i in page["items"])

    expected = sorted((call[0], "answered") for _, _, call in sent)
    assert wait_until(lambda: audited() == expected, timeout=20), audited()


def test_an_expired_and_a_cancelled_command_never_go_out(cluster):
    node_a, node_b = cluster.nodes
    on_a, on_b = operator_on(node_a), operator_on(node_b)
    expiring = queue(on_a, "/api/charger/reset", {"deviceId": "CQ-2", "type": "Hard", "ttlSeconds": 1})
    cancelled = queue(on_a, "/api/charger/remote-stop", {"deviceId": "CQ-2", "transactionId": 4})
    kept = queue(on_b, "/api/charger/reset", {"deviceId": "CQ-2", "type": "Soft"})

    status, body = on_b("DELETE", f"/api/charger/commands/{cancelled['commandId']}")
    assert (status, body["state"]) == (200, "cancelled"), body
    expired = in_state(on_b, expiring["commandId"], "expired", timeout=5)  # the sweep, on either node
    assert (expired["sentAt"], expired["response"]) == (None, None)
    status, body = on_a("DELETE", f"/api/charger/commands/{expiring['commandId']}")
    assert (status, body["error"]["code"], body["error"]["details"]) == (
        409,
        "command_not_queued",
        {"state": "expired"},
    )

    with RawCharger(node_a.ws_url, "CQ-2", AUTH_KEY, answers=ANSWERS) as charger:
        charger.boot()
        assert calls_within(charger, 2, 3) == [["Reset", {"type": "Soft"}]]
    assert in_state(on_a, kept["commandId"], "answered")["response"] == {"status": "Accepted"}
    assert command(on_a, cancelled["commandId"])["state"] == "cancelled"


def test_a_thousand_commands_for_offline_chargers_do_not_delay_one_for_an_online_charger(cluster):
    node_b = cluster.nodes[1]
    app = cluster.app()
    with app.app_context():
        for n in range(1000):
            command_queue.enqueue(f"CQ-OFF-{n:04d}", "Reset", {"type": "Soft"})
        db.session.commit()
        db.session.remove()

    with RawCharger(node_b.ws_url, "CQ-3", AUTH_KEY, answers=ANSWERS) as charger:
        charger.boot()
        calls_within(charger, 1, 0.5)
        # the CSMS's own call (a prepaid stop from a worker): announced, sent at once
        started = time.monotonic()
        with app.app_context():
            command_queue.request(
                "session:1:remote-stop", "CQ-3", "RemoteStopTransaction", {"transactionId": 1}, "t"
            )
            db.session.commit()
            db.session.remove()
        assert calls_within(charger, 1, 2) == [["RemoteStopTransaction", {"transactionId": 1}]]
        announced = time.monotonic() - started

        # one nobody announced (as if the node missed it): the node's sweep of its own chargers
        started = time.monotonic()
        with app.app_context():
            now = datetime.now(UTC)
            db.session.execute(
                insert(QueuedCommand).values(
                    command_id="unannounced-1",
                    charge_point_id="CQ-3",
                    action="Reset",
                    payload={"type": "Hard"},
                    state="queued",
                    created_at=now,
                    expires_at=now + timedelta(minutes=5),
                )
            )
            db.session.commit()
            db.session.remove()
        assert calls_within(charger, 2, 2.5)[1:] == [["Reset", {"type": "Hard"}]]
        swept = time.monotonic() - started
    print(f"online charger's command after 1,000 offline: announced {announced:.3f}s, swept {swept:.3f}s")
    assert announced < 1.0 and swept < 2.0, (announced, swept)
    waiting = cluster.scalar("SELECT count(*) FROM queued_commands WHERE state = 'queued'")
    assert waiting == 1000


def test_queued_commands_survive_the_sigkill_of_a_node_and_go_out_when_the_charger_comes_back_elsewhere(
    tmp_path, postgres_databases, rabbitmq_url
):
    with two_nodes(tmp_path, postgres_databases, rabbitmq_url, ENV, CHARGERS) as csms:
        node_a, node_b = csms.nodes
        on_a, on_b = operator_on(node_a), operator_on(node_b)
        first = queue(on_a, "/api/charger/reset", {"deviceId": "CQ-4", "type": "Soft"})
        unanswered = queue(on_a, "/api/charger/remote-stop", {"deviceId": "CQ-6", "transactionId": 6})

        with (
            RawCharger(node_a.ws_url, "CQ-5", AUTH_KEY, answers=ANSWERS) as charger,
            RawCharger(node_a.ws_url, "CQ-6", AUTH_KEY, answers=ANSWERS) as silent,
        ):
            charger.boot()
            silent.boot()  # node A sends it the queued RemoteStop, which it never answers
            assert in_state(on_b, unanswered["commandId"], "sent", timeout=5)["sentAt"] is not None
            assert wait_until(
                lambda: on_b("GET", "/api/cms/points/CQ-5")[1]["connection"]["connected"], timeout=5
            )
            node_a.kill_hard()
            # the killed node's lease lapses: its chargers are offline for the cluster
            assert wait_until(
                lambda: not on_b("GET", "/api/cms/points/CQ-5")[1]["connection"]["connected"],
                timeout=3 * PING,
            )
        lost = in_state(on_b, unanswered["commandId"], "failed", timeout=3 * PING)
        assert (lost["error"]["code"], lost["response"]) == ("NodeLost", None)
        second = queue(on_b, "/api/charger/remote-start", {"deviceId": "CQ-5", "idTag": "T5"})

        with (
            RawCharger(node_b.ws_url, "CQ-4", AUTH_KEY, answers=ANSWERS) as back_4,
            RawCharger(node_b.ws_url, "CQ-5", AUTH_KEY, answers=ANSWERS) as back_5,
            RawCharger(node_b.ws_url, "CQ-6", AUTH_KEY, answers=ANSWERS) as back_6,
        ):
            for back in (back_4, back_5, back_6):
                back.boot()
            assert calls_within(back_4, 1, 5) == [["Reset", {"type": "Soft"}]]
            assert calls_within(back_5, 1, 5) == [["RemoteStartTransaction", {"idTag": "T5"}]]
            assert calls_within(back_6, 1, 1.5) == []  # at most once: what the dead node sent is not resent
        assert in_state(on_b, first["commandId"], "answered")["response"] == {"status": "Accepted"}
        assert in_state(on_b, second["commandId"], "answered")["response"] == {"status": "Accepted"}
