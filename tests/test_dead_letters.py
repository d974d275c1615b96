"""Dead letters are an alarm: `/healthz` reports each queue's dead-letter depth (without turning
503) and the web process logs an error when it grows."""

from __future__ import annotations

import logging
import uuid

import pika
import pytest

from actors.storage import record_exchanges
from csms.pipeline.dead_letters import DeadLetterProbe


def test_embedded_dead_letters_show_in_healthz_and_the_log(app, worker, caplog):
    client = app.test_client()
    assert client.get("/healthz").get_json()["dead_letters"]["ocpp_messages"] == 0
    with caplog.at_level(logging.ERROR):
        record_exchanges.send_with_options(args=([{"charge_point_id": "NO-FRAMES"}],), max_retries=0)
        worker.join()
        response = client.get("/healthz")
        assert client.get("/healthz").status_code == 200  # the same depth again: logged once
    # the worker says why (csms.broker.DeadLetterLog), the web process how many there are
    assert "(record_exchanges on ocpp_messages) after 1 failed attempts: KeyError: 'frames'" in caplog.text
    assert response.status_code == 200  # an alarm, not an outage: the node still serves
    body = response.get_json()
    assert (body["status"], body["dead_letters"]["ocpp_messages"], body["dead_letters"]["metering"]) == (
        "ok",
        1,
        0,
    )
    assert [r.getMessage() for r in caplog.records if r.name == "csms.pipeline.dead_letters"] == [
        "dead-letter queues hold unapplied messages: "
        "{'ocpp_messages': 1, 'metering': 0, 'transactions': 0, 'billing': 0, 'commands': 0, "
        "'cms_events': 0, 'notifications': 0, 'integration_events': 0, 'webhooks': 0, 'smart_charging': 0}"
    ]


@pytest.mark.rabbitmq
def test_rabbitmq_probe_counts_each_dead_letter_queue(rabbitmq_url, caplog):
    queue, never_declared = f"probe-{uuid.uuid4().hex[:8]}", f"absent-{uuid.uuid4().hex[:8]}"
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_url))
    channel = connection.channel()
    channel.queue_declare(f"{queue}.XQ")
    try:
        for n in range(2):
            channel.basic_publish("", f"{queue}.XQ", f"poison {n}".encode())
        probe = DeadLetterProbe(rabbitmq_url, ttl=0, queues=(never_declared, queue))
        with caplog.at_level(logging.ERROR, logger="csms.pipeline.dead_letters"):
            assert probe.depths() == {never_declared: 0, queue: 2}
        assert "dead-letter queues hold unapplied messages" in caplog.text
    finally:
        channel.queue_delete(f"{queue}.XQ")
        connection.close()


def test_rabbitmq_probe_unreachable_reports_none():
    assert DeadLetterProbe("amqp://guest:guest@127.0.0.1:1/%2F", ttl=0).depths() is None
