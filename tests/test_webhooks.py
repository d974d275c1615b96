"""Integration events and webhooks in process (embedded mode, SQLite and PostgreSQL): the outbox is
part of the actor's transaction, webhooks are managed over REST, deliveries are signed, retried,
refused for non-public addresses and a failing webhook is disabled; `/metrics`' token; JSON logs;
`seed-demo` and `flask run` refused where they would do harm."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from csms import broker as broker_module
from csms.broker import InProcessWorker
from csms.extensions import db
from csms.logs import JsonFormatter
from csms.models import IntegrationEvent, User, Webhook, WebhookDelivery
from csms.services import events, users, webhooks
from tests.support.processes import ROOT, wait_until
from tests.support.receiver import Receiver


@pytest.mark.parametrize(
    ("pattern", "key", "matches"),
    [
        ("notification.#", "notification.charging.started", True),
        ("notification.#", "notification", True),
        ("notification.*", "notification.charging.started", False),
        ("notification.charging.*", "notification.charging.stopped", True),
        ("cms.*.created", "cms.station.created", True),
        ("cms.*.created", "cms.station.deleted", False),
        ("#", "meter.values.updated", True),
        ("#.updated", "meter.values.updated", True),
        ("meter.values.updated", "meter.values.updated", True),
        ("meter.values", "meter.values.updated", False),
    ],
)
def test_patterns_match_as_a_topic_exchange_binds(pattern, key, matches):
    assert events.matches(pattern, key) is matches


def test_a_signature_verifies_only_for_its_secret_body_and_time():
    body = b'{"eventId": "e-1"}'
    header = webhooks.sign("whsec_one", 1_800_000_000, body)
    assert header.startswith("t=1800000000,v1=") and len(header.split("v1=")[1]) == 64
    assert webhooks.verify("whsec_one", header, body, now=1_800_000_100)
    assert not webhooks.verify("whsec_two", header, body, now=1_800_000_100)
    assert not webhooks.verify("whsec_one", header, body + b" ", now=1_800_000_100)
    assert not webhooks.verify("whsec_one", header, body, now=1_800_001_000)  # a replay, too late
    assert not webhooks.verify("whsec_one", "garbage", body)


def test_an_event_belongs_to_its_transaction_and_its_key_gives_one_id(any_db_app):
    first = events.emit("notification.charging.started", {"transactionId": 7}, key="7")
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(IntegrationEvent)) == 0
    again = events.emit("notification.charging.started", {"transactionId": 7}, key="7")
    db.session.commit()
    redelivered = events.emit("notification.charging.started", {"transactionId": 7}, key="7")
    db.session.commit()
    assert first == again == redelivered
    row = db.session.scalars(select(IntegrationEvent)).one()
    document = json.loads(row.body)
    assert document["eventId"] == first and document["schemaVersion"] == 1
    assert document["type"] == row.routing_key == "notification.charging.started"
    assert document["data"] == {"transactionId": 7}
    assert events.backlog() == 1
    unkeyed = {events.emit("cms.station.created", {}) for _ in range(2)}
    assert len(unkeyed) == 2


@pytest.fixture
def client(app):
    return app.test_client()


def bearer(client, email: str, role: str) -> dict[str, str]:
    users.create_user(email, "password-123", role=role)
    token = client.post("/api/auth/login", json={"email": email, "password": "password-123"}).get_json()
    return {"Authorization": f"Bearer {token['access_token']}"}


def test_webhooks_are_managed_by_operators_and_show_their_secret_once(client):
    operator = bearer(client, "op@example.test", "operator")
    customer = bearer(client, "cu@example.test", "customer")
    body = {"url": "https://hooks.example.test/csms", "events": ["notification.#", "cms.*.created"]}
    assert client.post("/api/cms/webhooks", json=body, headers=customer).status_code == 403
    created = client.post("/api/cms/webhooks", json=body, headers=operator)
    assert created.status_code == 201
    hook = created.get_json()
    assert hook["secret"].startswith("whsec_") and len(hook["secret"]) == 54
    assert (hook["url"], hook["events"], hook["enabled"], hook["disabledReason"]) == (
        body["url"],
        body["events"],
        True,
        None,
    )
    listed = client.get("/api/cms/webhooks", headers=operator).get_json()
    assert listed["total"] == 1 and "secret" not in listed["items"][0]
    url = f"/api/cms/webhooks/{hook['id']}"
    changed = client.patch(url, json={"events": ["billing.#"], "enabled": False}, headers=operator).get_json()
    assert (changed["events"], changed["enabled"], changed["disabledReason"]) == (
        ["billing.#"],
        False,
        "disabled by an operator",
    )
    assert client.patch(url, json={"enabled": True}, headers=operator).get_json()["enabled"] is True
    assert client.get(f"{url}/deliveries", headers=operator).get_json()["total"] == 0
    assert client.delete(url, headers=operator).status_code == 204
    assert client.get(url, headers=operator).get_json()["error"]["code"] == "webhook_not_found"


BAD_WEBHOOKS = [
    ({"url": "ftp://hooks.example.test/x", "events": ["#"]}, "invalid_url"),
    ({"url": "https:///no-host", "events": ["#"]}, "invalid_url"),
    ({"url": "https://user:pw@hooks.example.test/", "events": ["#"]}, "invalid_url"),
    ({"url": "https://hooks.example.test/", "events": ["Not A Pattern"]}, "validation_error"),
    ({"url": "https://hooks.example.test/", "events": []}, "validation_error"),
    ({"url": "https://hooks.example.test/"}, "validation_error"),
    ({"url": 7, "events": ["#"]}, "validation_error"),
]


def test_a_bad_webhook_is_refused_with_a_code(client):
    operator = bearer(client, "op@example.test", "operator")
    for body, code in BAD_WEBHOOKS:
        answer = client.post("/api/cms/webhooks", json=body, headers=operator)
        assert (answer.status_code, answer.get_json()["error"]["code"]) == (422, code), body
    assert client.patch("/api/cms/webhooks/99", json={"enabled": True}, headers=operator).status_code == 404
    assert db.session.scalar(select(func.count()).select_from(Webhook)) == 0


def test_embedded_mode_delivers_retries_and_disables_a_webhook_failing_long_enough(make_app, caplog):
    app = make_app(WEBHOOK_ALLOW_PRIVATE=True, WEBHOOK_RETRY_BASE=0.05, WEBHOOK_DISABLE_AFTER=1)
    with app.app_context(), Receiver(failures=1_000) as receiver:
        worker = InProcessWorker(app).start()
        try:
            hook = webhooks.create(receiver.url, ["notification.charging.*"], "ops", None)
            events.emit("meter.values.updated", {"transactionId": 1}, key="m-1")  # matches nothing
            event_id = events.emit("notification.charging.started", {"transactionId": 1}, key="1")
            db.session.commit()  # kicks the relay

            def disabled() -> bool:
                db.session.expire_all()
                return not db.session.get(Webhook, hook.id).enabled

            with caplog.at_level(logging.WARNING, logger="csms.services.webhooks"):
                assert wait_until(disabled, timeout=20)
            worker.join()
        finally:
            worker.stop()
        webhook = db.session.get(Webhook, hook.id)
        assert webhook.disabled_reason.startswith("failing for 0.0 hours: HTTP 500")
        delivery = db.session.scalars(select(WebhookDelivery)).one()
        assert (delivery.event_id, delivery.state, delivery.last_status_code) == (event_id, "failed", 500)
        assert delivery.attempts == len(receiver.received()) >= 2
        assert {r.headers["X-CSMS-Event-Id"] for r in receiver.received()} == {event_id}
        assert events.backlog() == 0  # published (to the webhooks; embedded mode has no exchange)
    assert f"webhook {hook.id} disabled" in caplog.text
    assert hook.secret not in caplog.text


def test_a_webhook_is_not_called_on_a_non_public_address(make_app):
    app = make_app()  # WEBHOOK_ALLOW_PRIVATE off, as in production by default
    with app.app_context(), Receiver() as receiver:
        hook = webhooks.create(receiver.url, ["#"], None, None)
        events.emit("cms.station.created", {"entityId": "1"})
        db.session.commit()
        delivery_ids = webhooks.queue_deliveries(events.unpublished(10))
        db.session.commit()
        retry_in = webhooks.attempt(delivery_ids[0], 0, webhooks.Settings.of(app.config))
        delivery = db.session.get(WebhookDelivery, delivery_ids[0])
        assert retry_in == app.config["WEBHOOK_RETRY_BASE"]
        assert delivery.last_error.startswith("127.0.0.1 resolves to 127.0.0.1, a non-public address")
        assert receiver.received() == []
        assert db.session.get(Webhook, hook.id).failing_since is not None
        assert webhooks.attempt(delivery_ids[0], 0, webhooks.Settings.of(app.config)) is None  # taken


def test_metrics_need_the_token_when_one_is_set(make_app):
    client = make_app(METRICS_TOKEN="metrics-token-0123").test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    answer = client.get("/metrics", headers={"Authorization": "Bearer metrics-token-0123"})
    assert answer.status_code == 200
    names = {family.name for family in text_string_to_metric_families(answer.get_data(as_text=True))}
    assert {"csms_chargers_connected", "csms_ocpp_messages", "csms_outbox_backlog"} <= names


def test_json_logs_carry_the_ids_as_fields():
    record = logging.LogRecord("csms.x", logging.WARNING, __file__, 1, "refused %s", ("CP-1",), None)
    record.chargePointId = "CP-1"
    record.created = time.time()
    line = json.loads(JsonFormatter().format(record))
    assert {k: line[k] for k in ("level", "logger", "message", "chargePointId")} == {
        "level": "WARNING",
        "logger": "csms.x",
        "message": "refused CP-1",
        "chargePointId": "CP-1",
    }
    assert line["time"].endswith("+00:00")


def test_seed_demo_refuses_production_mode_without_force(make_app):
    app = make_app(RABBITMQ_URL="amqp://guest:guest@127.0.0.1:1/none")
    with app.app_context():
        result = app.test_cli_runner().invoke(args=["seed-demo"])
        assert result.exit_code == 1
        assert "refusing to seed demo accounts in production mode" in result.output
        assert db.session.scalar(select(func.count()).select_from(User)) == 0


@pytest.mark.slow
def test_flask_run_is_refused_with_a_pointer(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "run"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "CSMS_INSTANCE_PATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "Use `make run`" in result.stderr


def test_events_whose_kick_was_lost_leave_with_the_workers_sweep(make_app, monkeypatch):
    app = make_app(EVENTS_SWEEP_INTERVAL=0.2)
    with app.app_context():
        monkeypatch.setattr(events, "after_commit_hook", None)  # RabbitMQ refused the kick, say
        worker = InProcessWorker(app).start()
        try:
            events.emit("cms.station.created", {"entityId": "1"})
            db.session.commit()
            assert events.backlog() == 1

            def published() -> bool:
                db.session.rollback()  # a fresh snapshot
                return events.backlog() == 0

            assert wait_until(published, timeout=10)
        finally:
            worker.stop()


def test_after_commit_kicks_are_coalesced_but_every_commit_is_followed_by_a_run(monkeypatch):
    sent: list[int | None] = []

    class Broker:
        def enqueue(self, message, delay=None):
            assert message.queue_name == "integration_events" and message.args == ([],)
            sent.append(delay)

    now = [100.0]
    monkeypatch.setattr(broker_module.time, "monotonic", lambda: now[0])
    kicks = broker_module.RelayKicks(Broker(), window=0.25)
    for at in (100.0, 100.01, 100.02, 100.2, 100.26, 100.6, 101.5):
        now[0] = at
        kicks()
    # at once; one run at 100.25 for the next three commits; one at 100.5 for the commit at 100.26
    # (after the run at 100.25 began); one at 100.75 for 100.6; at 101.5 at once again
    assert sent == [None, 240, 240, 150, None]
