"""The same actor runs in both modes: inside the web process (embedded) and in a separate
`dramatiq csms.worker actors` process consuming RabbitMQ (production)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from actors.storage import record_exchanges
from csms.broker import get_app_broker
from csms.extensions import db
from csms.models import OcppMessage
from csms.pipeline.addresses import RECORD_EXCHANGES
from tests.conftest import ROOT


def a_frame(**overrides):
    return {
        "event_id": str(uuid.uuid4()),
        "direction": "in",
        "message_type": 2,
        "unique_id": "msg-1",
        "action": "Heartbeat",
        "payload": {},
        "at": datetime.now(UTC).isoformat(),
        **overrides,
    }


def an_exchange():
    """A Heartbeat and its answer, as the gateway hands them off."""
    return {
        "charge_point_id": "CP-1",
        "node_id": "test",
        "frames": [a_frame(), a_frame(direction="out", message_type=3, payload={"currentTime": "x"})],
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
    exchange = an_exchange()
    message = record_exchanges.send([exchange])
    assert message.queue_name == "ocpp_messages"
    worker.join()
    request_id = exchange["frames"][0]["event_id"]
    stored = db.session.scalar(select(OcppMessage).where(OcppMessage.event_id == request_id))
    assert (stored.action, stored.direction, stored.unique_id) == ("Heartbeat", "in", "msg-1")
    assert _stored(exchange["frames"][1]["event_id"]) == 1


def test_redelivered_event_is_stored_once(app, worker):
    exchange = an_exchange()
    for _ in range(3):
        record_exchanges.send([exchange])
    worker.join()
    assert _stored(exchange["frames"][0]["event_id"]) == 1
    assert db.session.scalar(select(func.count()).select_from(OcppMessage)) == 2


def test_the_actor_is_bound_to_the_app_broker(app):
    assert record_exchanges.broker is get_app_broker(app)
    assert "ocpp_messages" in get_app_broker(app).get_declared_queues()


@pytest.mark.postgres
@pytest.mark.rabbitmq
@pytest.mark.slow
def test_dramatiq_actors_process_runs_the_actor_from_rabbitmq(make_app, postgres_url, rabbitmq_url):
    app = make_app(DATABASE_URL=postgres_url, RABBITMQ_URL=rabbitmq_url)
    env = {**os.environ, "CSMS_DATABASE_URL": postgres_url, "CSMS_RABBITMQ_URL": rabbitmq_url}
    worker = subprocess.Popen(
        [sys.executable, "-m", "dramatiq", "csms.worker", "actors", "--processes", "1", "--threads", "2"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        with app.app_context():
            exchange = an_exchange()
            record_exchanges.send([exchange])
            record_exchanges.send([exchange])  # a duplicate delivery
            event_id = exchange["frames"][0]["event_id"]
            assert wait_until(lambda: _stored(event_id) == 1), "the worker process stored nothing"
            time.sleep(0.5)
            assert _stored(event_id) == 1
    finally:
        worker.terminate()
        output, _ = worker.communicate(timeout=30)
    assert "Worker process is ready" in output, output


def test_a_message_that_keeps_failing_is_dead_lettered_with_its_reason(app, worker, caplog):
    broker = get_app_broker(app)
    with caplog.at_level("ERROR", logger="csms.broker"):
        poison = record_exchanges.send_with_options(
            args=([{"frames": "not a list"}],), max_retries=1, min_backoff=1
        )
        worker.join()
    assert [m.message_id for m in broker.dead_letters] == [poison.message_id]
    expected = (
        f"dead-lettered {poison.message_id} (record_exchanges on ocpp_messages) after 2 failed attempts"
    )
    assert expected in caplog.text


def test_a_poison_exchange_does_not_hold_back_the_rest_of_its_batch(app, worker, monkeypatch, caplog):
    """The batch is applied one by one; the bad exchange goes on alone, with its own retries, to the
    dead-letter queue, and the good ones are stored."""
    monkeypatch.setitem(record_exchanges.options, "max_retries", 1)
    monkeypatch.setitem(record_exchanges.options, "min_backoff", 1)
    broker = get_app_broker(app)
    good = [an_exchange(), an_exchange()]
    poison = {"charge_point_id": "CP-1", "frames": "not a list"}
    with caplog.at_level("ERROR"):
        batch = record_exchanges.send([good[0], poison, good[1]])
        worker.join()
    for exchange in good:
        assert _stored(exchange["frames"][0]["event_id"]) == 1
        assert _stored(exchange["frames"][1]["event_id"]) == 1
    [dead] = broker.dead_letters
    assert dead.message_id != batch.message_id
    assert dead.args == ([poison],)
    assert "applying them one by one" in caplog.text


def test_a_hand_off_that_was_never_started_parks_at_once(make_app):
    """An app outside the web process (a CLI command, a script) has no flusher and no RabbitMQ
    connection: what it hands off is kept in the outbox before `submit` returns."""
    from csms.models import OutboxMessage

    app = make_app(RABBITMQ_URL="amqp://guest:guest@127.0.0.1:1/%2F")
    handoff = app.extensions["ocpp"].handoff
    with app.app_context():
        assert handoff.submit(RECORD_EXCHANGES, an_exchange(), durable=True) is True
        assert handoff.submit(RECORD_EXCHANGES, an_exchange(), durable=False) is True
        assert db.session.scalar(select(func.count()).select_from(OutboxMessage)) == 2
