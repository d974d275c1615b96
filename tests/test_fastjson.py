"""JSON on the hot paths: orjson where it can, the standard library where orjson refuses a value,
and Dramatiq messages that either encoder can read."""

from __future__ import annotations

import json

import dramatiq
import pytest
from dramatiq.encoder import DecodeError, JSONEncoder

from csms import fastjson


def test_dumps_is_compact_utf8_json():
    value = {"idTag": "Zoë", "meterValue": [{"value": "1.5"}], "n": 3}
    assert fastjson.dumps(value) == json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def test_integers_beyond_64_bits_still_encode():
    assert json.loads(fastjson.dumps({"connectorId": 10**30})) == {"connectorId": 10**30}


def test_dramatiq_messages_round_trip_with_the_default_encoder():
    message = dramatiq.Message(
        queue_name="metering",
        actor_name="a",
        args=([{"frames": [{"at": "t", "payload": {"x": "é"}}]}],),
        kwargs={},
        options={},
    )
    data = json.loads(json.dumps(message.asdict()))  # as decoded: lists, not tuples
    ours = fastjson.DramatiqEncoder()
    # a message parked by a web node that still used Dramatiq's own encoder decodes, and back
    assert ours.decode(JSONEncoder().encode(data)) == data
    assert JSONEncoder().decode(ours.encode(data)) == data


def test_an_undecodable_message_is_a_dramatiq_decode_error():
    with pytest.raises(DecodeError):
        fastjson.DramatiqEncoder().decode(b"{not json")


def test_the_broker_module_installs_the_encoder():
    import csms.broker  # noqa: F401

    assert isinstance(dramatiq.get_encoder(), fastjson.DramatiqEncoder)


def test_text_json_reads_and_writes_what_the_standard_library_does():
    """The Socket.IO message queue's JSON module: text out, and either side may be an older node."""
    emit = {"method": "emit", "event": "meter:values", "data": [{"value": "1.5", "ü": None}], "room": ["a"]}
    text = fastjson.TextJson.dumps(emit)
    assert isinstance(text, str)
    assert json.loads(text) == emit
    assert fastjson.TextJson.loads(json.dumps(emit)) == emit
    assert fastjson.TextJson.loads(fastjson.TextJson.dumps({"big": 2**70})) == {"big": float(2**70)}
