"""How the production hand-off cuts exchanges into RabbitMQ messages: everything that arrives within
the linger shares one, up to `HANDOFF_BATCH`, and up to an address's own smaller `max_batch`
(Start/StopTransaction: a batch holds its transactions' rows locked until it commits). The
publisher is replaced by one that records what it was given; its real behaviour and the whole path
are in tests/test_publisher.py and tests/test_gateway_production.py."""

from __future__ import annotations

import gevent
import gevent.event

from csms.fastjson import DramatiqEncoder
from csms.pipeline.addresses import PROCESS_METER_VALUES, PROCESS_TRANSACTION_MESSAGES
from csms.pipeline.handoff import BrokerHandoff


class RecordingPublisher:
    def __init__(self) -> None:
        self.published: list[tuple[str, list]] = []
        self.connected = gevent.event.Event()

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def publish(self, queue_name: str, body: bytes, message_id: str) -> gevent.event.AsyncResult:
        self.published.append((queue_name, DramatiqEncoder().decode(body)["args"][0]))
        result = gevent.event.AsyncResult()
        result.set(True)
        return result


def batch_sizes(publisher: RecordingPublisher, queue_name: str) -> list[int]:
    return [len(items) for queue, items in publisher.published if queue == queue_name]


def test_an_address_with_a_smaller_batch_gets_smaller_messages(make_app) -> None:
    app = make_app(RABBITMQ_URL="amqp://guest:guest@127.0.0.1:1/%2F", HANDOFF_BATCH=200)
    handoff = BrokerHandoff(app, linger=0.05, max_batch=200)
    handoff.publisher = publisher = RecordingPublisher()
    handoff.start()
    try:
        for n in range(45):
            handoff.submit(PROCESS_TRANSACTION_MESSAGES, {"n": n}, durable=False)
            handoff.submit(PROCESS_METER_VALUES, {"n": n}, durable=False)
        gevent.sleep(0.3)
    finally:
        handoff.stop()

    assert batch_sizes(publisher, "transactions") == [20, 20, 5]
    assert batch_sizes(publisher, "metering") == [45]
    items = [item["n"] for queue, batch in publisher.published if queue == "transactions" for item in batch]
    assert items == list(range(45))  # in the order they came


def test_the_configured_batch_bounds_every_address(make_app) -> None:
    app = make_app(RABBITMQ_URL="amqp://guest:guest@127.0.0.1:1/%2F")
    handoff = BrokerHandoff(app, linger=0.05, max_batch=8)
    handoff.publisher = publisher = RecordingPublisher()
    handoff.start()
    try:
        for n in range(20):
            handoff.submit(PROCESS_TRANSACTION_MESSAGES, {"n": n}, durable=False)
        gevent.sleep(0.3)
    finally:
        handoff.stop()

    assert batch_sizes(publisher, "transactions") == [8, 8, 4]
