"""The outside world in production mode (web process, `dramatiq csms.worker actors`, PostgreSQL,
RabbitMQ), one deployment for the module: a consumer's queue bound to `events_exchange` hears a whole
charging session, a webhook gets signed deliveries and a retry after a 500, `/metrics` on the web
process and the worker parse and move with traffic, refused handshakes are logged with their reason,
and production refuses to start with a guessable secret."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
import uuid
from decimal import Decimal

import pika
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import InvalidStatus

from csms.services import webhooks
from tests.support.chargers import RawCharger
from tests.support.deployment import AUTH_KEY, deployment
from tests.support.processes import ROOT, free_port, wait_until
from tests.support.receiver import Receiver

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.rabbitmq]

OPERATOR = ("ops@example.test", "operator-password-1")
TARIFF = {"energy_price": Decimal("0.3000"), "session_fee": Decimal("0.5000")}


@pytest.fixture(scope="module")
def csms(tmp_path_factory, postgres_databases, rabbitmq_url):
    workdir = tmp_path_factory.mktemp("integration")
    worker_metrics = free_port()
    env = {
        "CSMS_BOOT_CONFIGURATION": "",
        "CSMS_LOG_FORMAT": "json",
        "CSMS_WEBHOOK_ALLOW_PRIVATE": "true",  # the receiver is on 127.0.0.1
        "CSMS_WEBHOOK_RETRY_BASE": "0.2",
        "dramatiq_prom_port": str(worker_metrics),
        "dramatiq_prom_host": "127.0.0.1",
        "dramatiq_prom_db": str(workdir / "worker-metrics"),
    }
    with deployment(
        "production",
        workdir,
        database_url=postgres_databases(),
        rabbitmq_url=rabbitmq_url,
        env=env,
        charge_points={"INT-1": AUTH_KEY, "INT-2": AUTH_KEY},
        customers={"ada@example.test": ("ADA-TAG", 5000)},
        operators=dict([OPERATOR]),
        tariff=TARIFF,
    ) as running:
        running.worker_metrics_url = f"http://127.0.0.1:{worker_metrics}/"
        yield running


@pytest.fixture(scope="module")
def operator(csms) -> requests.Session:
    http = requests.Session()
    email, password = OPERATOR
    answer = http.post(f"{csms.web.base_url}/api/auth/login", json={"email": email, "password": password})
    http.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"
    return http


@pytest.fixture
def consumer(rabbitmq_url):
    """A third party's own durable queue bound to `notification.#`, as the README shows."""
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_url))
    channel = connection.channel()
    channel.exchange_declare("events_exchange", exchange_type="topic", durable=True)
    queue = f"test-consumer-{uuid.uuid4().hex[:8]}"
    channel.queue_declare(queue, durable=True)
    channel.queue_bind(queue, "events_exchange", routing_key="notification.#")
    yield channel, queue
    channel.queue_delete(queue)
    connection.close()


def a_session(csms, charge_point_id: str) -> int:
    """Boot, a status, a start with the customer's tag, a meter reading and the stop: the id."""
    with RawCharger(csms.ws_url, charge_point_id, AUTH_KEY) as charger:
        charger.boot()
        status = {"connectorId": 1, "errorCode": "NoError", "status": "Charging"}
        charger.call("StatusNotification", {**status, "timestamp": "2026-08-01T09:59:00Z"})
        start = {
            "connectorId": 1,
            "idTag": "ADA-TAG",
            "meterStart": 1000,
            "timestamp": "2026-08-01T10:00:00Z",
        }
        transaction_id = charger.call("StartTransaction", start)[2]["transactionId"]
        sample = {"timestamp": "2026-08-01T10:30:00Z", "sampledValue": [{"value": "6000"}]}
        charger.call(
            "MeterValues", {"connectorId": 1, "transactionId": transaction_id, "meterValue": [sample]}
        )
        stop = {"transactionId": transaction_id, "meterStop": 6000, "timestamp": "2026-08-01T11:00:00Z"}
        charger.call("StopTransaction", {**stop, "reason": "EVDisconnected"})
    return transaction_id


def consume(channel, queue: str, until, timeout: float = 30) -> list[tuple[str, dict, str]]:
    """(routing key, body, message id) of each message, until `until(messages)` holds."""
    messages: list[tuple[str, dict, str]] = []

    def arrived() -> bool:
        method, properties, body = channel.basic_get(queue, auto_ack=True)
        if method is not None:
            messages.append((method.routing_key, json.loads(body), properties.message_id))
        return until(messages)

    assert wait_until(arrived, timeout=timeout, interval=0.02), messages
    return messages


def test_a_session_reaches_a_bound_queue_and_a_signed_webhook_with_a_retry(csms, operator, consumer):
    channel, queue = consumer
    with Receiver(failures=1) as receiver:
        created = operator.post(
            f"{csms.web.base_url}/api/cms/webhooks",
            json={"url": receiver.url, "events": ["notification.charging.*", "billing.session.#"]},
        )
        assert created.status_code == 201, created.text
        hook = created.json()
        assert hook["secret"].startswith("whsec_") and hook["enabled"] is True
        assert "secret" not in operator.get(f"{csms.web.base_url}/api/cms/webhooks/{hook['id']}").json()

        transaction_id = a_session(csms, "INT-1")

        def both(messages) -> bool:
            keys = {(key, body["data"].get("transactionId")) for key, body, _ in messages}
            return {
                ("notification.charging.started", transaction_id),
                ("notification.charging.stopped", transaction_id),
            } <= keys

        messages = consume(channel, queue, both)
        by_key = {key: (body, message_id) for key, body, message_id in messages}
        started, started_id = by_key["notification.charging.started"]
        stopped, _ = by_key["notification.charging.stopped"]
        assert started["schemaVersion"] == 1 and started["type"] == "notification.charging.started"
        assert started["eventId"] == started_id and uuid.UUID(started["eventId"])
        session_id = started["data"]["sessionId"]
        assert session_id is not None
        assert {k: started["data"][k] for k in ("chargePointId", "connectorId", "idTag", "meterStartWh")} == {
            "chargePointId": "INT-1",
            "connectorId": 1,
            "idTag": "ADA-TAG",
            "meterStartWh": 1000,
        }
        assert {k: stopped["data"][k] for k in ("chargePointId", "energyWh", "reason")} == {
            "chargePointId": "INT-1",
            "energyWh": 5000,
            "reason": "EVDisconnected",
        }
        # Start and Stop are separate messages, applied in either order: a Stop applied before its
        # Start linked the session cannot name it (the bill below links both ids).
        assert stopped["data"]["sessionId"] in (session_id, None)
        status = by_key["notification.charger.status.changed"][0]["data"]
        assert (status["chargePointId"], status["connectorId"], status["status"]) == ("INT-1", 1, "Charging")

        # The webhook: started, stopped and the bill, each signed; the first attempt got a 500 and
        # the same event came again.
        def delivered() -> set[str]:
            return {r.headers["X-CSMS-Event"] for r in receiver.received() if r.answered == 200}

        expected = {
            "notification.charging.started",
            "notification.charging.stopped",
            "billing.session.settled",
        }
        assert wait_until(lambda: expected <= delivered(), timeout=30), receiver.received()
        requests_seen = receiver.received()
        for request in requests_seen:
            assert webhooks.verify(hook["secret"], request.headers["X-CSMS-Signature"], request.body)
            assert not webhooks.verify("whsec_another", request.headers["X-CSMS-Signature"], request.body)
            assert not webhooks.verify(
                hook["secret"], request.headers["X-CSMS-Signature"], request.body + b" "
            )
        first = requests_seen[0]
        assert first.answered == 500
        retried = [
            r for r in requests_seen if r.headers["X-CSMS-Event-Id"] == first.headers["X-CSMS-Event-Id"]
        ]
        assert [r.answered for r in retried] == [500, 200] and retried[0].body == retried[1].body
        bodies = {r.headers["X-CSMS-Event"]: json.loads(r.body) for r in requests_seen if r.answered == 200}
        assert bodies["notification.charging.started"]["eventId"] == started["eventId"]  # one id, both ways
        bill = bodies["billing.session.settled"]["data"]
        assert (bill["sessionId"], bill["transactionId"], bill["energyWh"]) == (
            session_id,
            transaction_id,
            5000,
        )
        assert bill["captured"] == "2.00"  # 5 kWh x 0.30 + 0.50

        def deliveries() -> dict:
            return operator.get(f"{csms.web.base_url}/api/cms/webhooks/{hook['id']}/deliveries").json()

        # the receiver has answered; the worker records each outcome a moment later
        assert wait_until(
            lambda: {item["state"] for item in deliveries()["items"]} == {"succeeded"}, timeout=10
        )
        log = deliveries()
        assert log["total"] == 3
        assert {item["state"] for item in log["items"]} == {"succeeded"}
        assert sorted(item["attempts"] for item in log["items"]) == [1, 1, 2]
        assert operator.delete(f"{csms.web.base_url}/api/cms/webhooks/{hook['id']}").status_code == 204


def scrape(url: str, **headers: str) -> dict[tuple[str, tuple], float]:
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_parse_and_move_with_traffic(csms):
    url = f"{csms.web.base_url}/metrics"
    heartbeats = ("csms_ocpp_messages_total", (("action", "Heartbeat"), ("outcome", "result")))
    before = scrape(url)
    with RawCharger(csms.ws_url, "INT-2", AUTH_KEY) as charger:
        charger.boot()
        for _ in range(3):
            charger.call("Heartbeat", {})
        # each message is counted right after its answer is written: the last may still be on its way
        expected = before.get(heartbeats, 0) + 3
        assert wait_until(lambda: scrape(url).get(heartbeats) == expected, timeout=5)
        during = scrape(url)
    assert during[heartbeats] == expected
    assert during[("csms_chargers_connected", ())] == before[("csms_chargers_connected", ())] + 1
    replies = ("csms_ocpp_reply_seconds_count", ())  # the boot and the heartbeats, each observed
    assert wait_until(lambda: scrape(url)[replies] >= before[replies] + 4, timeout=5)
    handed_off = ("csms_handoff_items_total", ())  # counted once its batch is published, a moment later
    assert wait_until(lambda: scrape(url)[handed_off] >= before[handed_off] + 4, timeout=5)
    assert during[("csms_outbox_backlog", ())] == 0
    assert during[("csms_dead_letter_messages", (("queue", "transactions"),))] == 0
    assert wait_until(
        lambda: scrape(url)[("csms_chargers_connected", ())] == before[("csms_chargers_connected", ())]
    )

    stored = (
        "dramatiq_messages_total",
        (("actor_name", "record_exchanges"), ("queue_name", "ocpp_messages")),
    )

    def published(worker: dict) -> float:
        return sum(v for (name, _), v in worker.items() if name == "csms_integration_events_published_total")

    # the worker applies the boot and relays its status events a moment after the answers
    assert wait_until(lambda: (w := scrape(csms.worker_metrics_url)).get(stored, 0) > 0 and published(w) > 0)


def test_refused_handshakes_are_logged_with_their_reason(csms):
    for charge_point_id, key, status in (("INT-1", "a-wrong-key-000000", 401), ("NOBODY-9", AUTH_KEY, 404)):
        with pytest.raises(InvalidStatus) as refused:
            RawCharger(csms.ws_url, charge_point_id, key)
        assert refused.value.response.status_code == status

    def lines() -> list[dict]:
        return [json.loads(line) for line in csms.web.log().splitlines() if line.startswith("{")]

    def refusals() -> dict[str, dict]:
        return {r["chargePointId"]: r for r in lines() if r["message"].startswith("refused the connection")}

    assert wait_until(lambda: {"INT-1", "NOBODY-9"} <= set(refusals()), timeout=5)
    found = refusals()
    assert found["INT-1"]["reason"] == "unauthorized" and found["INT-1"]["level"] == "WARNING"
    assert "wrong credentials" in found["INT-1"]["message"]
    assert found["NOBODY-9"]["reason"] == "unknown_charge_point"
    assert "a-wrong-key-000000" not in csms.web.log()
    assert (
        any(r["message"].startswith("INT-1 booted") for r in lines()) is False
    )  # booting is the worker's line
    worker_lines = [json.loads(line) for line in csms.worker.log().splitlines() if line.startswith("{")]
    boots = [r for r in worker_lines if r.get("event") == "boot"]
    assert boots and boots[0]["chargePointId"] in {"INT-1", "INT-2"}


def test_production_refuses_the_default_secret(rabbitmq_url, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CSMS_SECRET_KEY"}
    env.update(CSMS_RABBITMQ_URL=rabbitmq_url, CSMS_INSTANCE_PATH=str(tmp_path), CSMS_PORT=str(free_port()))
    result = subprocess.run(
        [sys.executable, "wsgi.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].startswith(
        "csms-web: refusing to start in production mode: CSMS_SECRET_KEY is the default"
    )
