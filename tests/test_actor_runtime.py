"""The same actor runs in both modes: inside the web process (embedded) and in a separate
`dramatiq actors` process consuming RabbitMQ (production)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from actors.storage import store_ocpp_message
from csms.broker import get_app_broker
from csms.extensions import db
from csms.models import OcppMessage
from tests.conftest import ROOT


def an_event(**overrides):
    return {
        "event_id": str(uuid.uuid4()),
        "charge_point_id": "CP-1",
        "direction": "in",
        "message_type": 2,
        "unique_id": "msg-1",
        "action": "Heartbeat",
        "payload": {},
        "received_at": datetime.now(UTC).isoformat(),
        "node_id": "test",
        **overrides,
    }


def _stored(event_id: str) -> int:
    db.session.rollback()  # see other connections' commits
    return db.session.scalar(select(func.count()).where(OcppMessage.event_id == event_id))


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def test_in_process_worker_runs_the_actor(app, worker):
    event = an_event()
    message = store_ocpp_message.send(event)
    assert message.queue_name == "ocpp_messages"
    worker.join()
    stored = db.session.scalar(select(OcppMessage).where(OcppMessage.event_id == event["event_id"]))
    assert (stored.action, stored.direction, stored.unique_id) == ("Heartbeat", "in", "msg-1")


def test_redelivered_event_is_stored_once(app, worker):
    event = an_event()
    for _ in range(3):
        store_ocpp_message.send(event)
    worker.join()
    assert _stored(event["event_id"]) == 1


def test_the_actor_is_bound_to_the_app_broker(app):
    assert store_ocpp_message.broker is get_app_broker(app)
    assert "ocpp_messages" in get_app_broker(app).get_declared_queues()


@pytest.mark.postgres
@pytest.mark.rabbitmq
@pytest.mark.slow
def test_dramatiq_actors_process_runs_the_actor_from_rabbitmq(make_app, postgres_url, rabbitmq_url):
    app = make_app(DATABASE_URL=postgres_url, RABBITMQ_URL=rabbitmq_url)
    env = {**os.environ, "CSMS_DATABASE_URL": postgres_url, "CSMS_RABBITMQ_URL": rabbitmq_url}
    worker = subprocess.Popen(
        [sys.executable, "-m", "dramatiq", "actors", "--processes", "1", "--threads", "2"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        with app.app_context():
            event = an_event()
            store_ocpp_message.send(event)
            store_ocpp_message.send(event)  # a duplicate delivery
            assert wait_until(lambda: _stored(event["event_id"]) == 1), "the worker process stored nothing"
            time.sleep(0.5)
            assert _stored(event["event_id"]) == 1
    finally:
        worker.terminate()
        output, _ = worker.communicate(timeout=30)
    assert "Worker process is ready" in output, output
