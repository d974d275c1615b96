"""Socket.IO emits of a worker batch travel as one message-queue message and arrive as the emits
python-socketio knows, in order."""

from __future__ import annotations

import json

from socketio import KombuManager

from csms.realtime import BatchedKombuManager

EMITS = [
    ("meter:values", {"energyWh": 2000}, ["operators", "charger:CP-1"]),
    (
        "notification",
        {
            "type": "meter.values.updated",
            "chargerId": 1,
            "deviceId": "CP-1",
            "data": {"energyWh": 2000},
            "timestamp": "2026-12-02T04:00:00.000Z",
        },
        ["operators"],
    ),
]


def sent_in_one_batch(monkeypatch) -> tuple[BatchedKombuManager, list[dict]]:
    sender = BatchedKombuManager("amqp://", channel="test", write_only=True)
    published: list[dict] = []
    monkeypatch.setattr(KombuManager, "_publish", lambda self, data: published.append(data))
    with sender.batched():
        for event, data, rooms in EMITS:
            sender.emit(event, data, to=rooms, namespace="/")
    return sender, published


def test_emits_in_a_batch_are_published_as_one_message(monkeypatch):
    _, published = sent_in_one_batch(monkeypatch)
    assert len(published) == 1 and published[0]["method"] == "emit_many"
    assert [(m["event"], m["data"], m["room"]) for m in published[0]["emits"]] == [
        (event, [data], rooms) for event, data, rooms in EMITS
    ]


def test_outside_a_batch_each_emit_is_its_own_message(monkeypatch):
    sender = BatchedKombuManager("amqp://", channel="test", write_only=True)
    published: list[dict] = []
    monkeypatch.setattr(KombuManager, "_publish", lambda self, data: published.append(data))
    sender.emit("meter:values", {"energyWh": 1}, to=["operators"], namespace="/")
    assert [m["method"] for m in published] == ["emit"]


def test_the_receiving_side_unpacks_it_and_passes_the_rest(monkeypatch):
    sender, published = sent_in_one_batch(monkeypatch)
    other = {"method": "disconnect", "sid": "x", "host_id": "h"}
    queue = [json.dumps(published[0]), json.dumps(other), "not json"]
    monkeypatch.setattr(KombuManager, "_listen", lambda self: iter(queue))
    received = list(BatchedKombuManager("amqp://", channel="test")._listen())
    assert [m["event"] for m in received[:2]] == ["meter:values", "notification"]
    assert all(m["method"] == "emit" and m["host_id"] == sender.host_id for m in received[:2])
    assert received[2:] == [json.dumps(other), "not json"]


def test_emit_json_publishes_what_python_socketio_emit_does(monkeypatch):
    """`emit_json` skips the library's binary scan; the message it queues must stay the library's."""
    sender = BatchedKombuManager("amqp://", channel="test", write_only=True)
    published: list[dict] = []
    monkeypatch.setattr(KombuManager, "_publish", lambda self, data: published.append(data))
    for event, data, rooms in EMITS:
        sender.emit(event, data, to=rooms, namespace="/")
        sender.emit_json(event, data, rooms)
    assert len(published) == 2 * len(EMITS)
    assert published[0::2] == published[1::2]


def test_a_web_nodes_queue_of_live_events_expires_30_s_after_the_node(make_app):
    """A stopped node's queue goes after 30 s, not python-socketio's five minutes of every event."""
    from csms.extensions import socketio

    make_app(RABBITMQ_URL="amqp://guest:guest@127.0.0.1:1/%2F")
    queue = socketio.server.manager._queue()
    assert queue.queue_arguments == {"x-expires": 30_000}
    assert not queue.durable
