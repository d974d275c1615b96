"""`GET /healthz`: 200 with every dependency ok, 503 naming the one that is down."""

from __future__ import annotations

import pytest


def test_embedded_with_worker_running(app, worker):
    response = app.test_client().get("/healthz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["db"] == "ok" and body["broker"] == "ok"
    assert body["mode"] == "embedded"
    assert body["status"] == "ok"
    assert body["node"]
    assert body["dead_letters"] == {
        "ocpp_messages": 0,
        "metering": 0,
        "transactions": 0,
        "billing": 0,
        "commands": 0,
        "cms_events": 0,
        "notifications": 0,
        "integration_events": 0,
        "webhooks": 0,
        "smart_charging": 0,
    }
    assert body["gateway"] == {
        "connections": 0,
        "dropped_frames": 0,
        "unexpected_replies": 0,
        "replaced_connections": 0,
        "paced_messages": 0,
        "outbox": 0,
        "handoff": {"items": 0, "batches": 0},
        "transaction_ids": {"items": 0, "batches": 0},
    }
    assert body["cluster"] == {  # one node, no RabbitMQ: nothing to route, announcements in-process
        "lease_seconds": 45.0,
        "queue": None,
        "bus": None,
        "bus_counters": None,
        "announcements": "ok",
        "announcement_counters": {"announcements": 0, "resyncs": 0},
    }


def test_embedded_without_worker_is_unhealthy(app):
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["broker"] == "stopped"


def test_database_unreachable(make_app, tmp_path):
    app = make_app(DATABASE_URL="postgresql://nobody@127.0.0.1:1/none?connect_timeout=1")
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["db"] == "unreachable"


@pytest.mark.postgres
@pytest.mark.rabbitmq
def test_production_mode_with_real_services(make_app, postgres_url, rabbitmq_url):
    app = make_app(DATABASE_URL=postgres_url, RABBITMQ_URL=rabbitmq_url)
    response = app.test_client().get("/healthz")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["cluster"]["bus"] is None  # not serving: this app never joined the cluster
    assert body | {"node": None, "version": None, "gateway": None, "dead_letters": None, "cluster": None} == {
        "status": "ok",
        "db": "ok",
        "broker": "ok",
        "mode": "production",
        "node": None,
        "version": None,
        "gateway": None,
        "dead_letters": None,
        "cluster": None,
    }
    # this run's RabbitMQ vhost may hold other tests' dead letters: a count per queue
    assert {queue: type(depth) for queue, depth in body["dead_letters"].items()} == dict.fromkeys(
        [
            "ocpp_messages",
            "metering",
            "transactions",
            "billing",
            "commands",
            "cms_events",
            "notifications",
            "integration_events",
            "webhooks",
            "smart_charging",
        ],
        int,
    )


@pytest.mark.postgres
def test_production_mode_with_broker_down(make_app, postgres_url):
    app = make_app(DATABASE_URL=postgres_url, RABBITMQ_URL="amqp://guest:guest@127.0.0.1:1/%2F")
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    body = response.get_json()
    assert (body["db"], body["broker"], body["status"]) == ("ok", "unreachable", "degraded")


def test_unknown_path_and_method_get_the_json_envelope(app):
    client = app.test_client()
    missing = client.get("/nope")
    assert missing.status_code == 404
    assert missing.get_json()["error"]["code"] == "not_found"
    wrong_method = client.post("/healthz")
    assert wrong_method.status_code == 405
    assert wrong_method.get_json()["error"]["code"] == "method_not_allowed"
    assert "GET" in wrong_method.headers["Allow"]
