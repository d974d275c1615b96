"""Frames nested far deeper than any OCPP payload (issue #14, finding 7): refused with a
FormationViolation before recursive code (jsonschema's error report, the hand-off's encoder) meets
them. The end-to-end answer over a real WebSocket is in `test_ingest_production`."""

from __future__ import annotations

import pytest

from csms.ocpp import errors, frames, validation
from csms.ocpp.errors import OcppError


def nested(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


def test_nests_deeper_counts_lists_and_objects():
    assert not frames.nests_deeper({"a": [{"b": 1}]}, 3)
    assert frames.nests_deeper({"a": [{"b": []}]}, 3)
    assert not frames.nests_deeper("[[[[", 1)
    assert frames.nests_deeper(frames.parse(f'[2,"x","A",{{"v":{nested(1020)}}}]').payload)


def test_a_frame_deeper_than_the_decoder_takes_is_refused_with_its_id():
    with pytest.raises(frames.FrameError) as refused:
        frames.parse(f'[2,"deep","Heartbeat",{{"v":{nested(100_000)}}}]')
    assert (refused.value.unique_id, refused.value.description) == ("deep", frames.TOO_DEEP)


@pytest.mark.parametrize("action", ["BootNotification", "RemoteStartTransaction"])
def test_validation_reports_a_deep_value_as_a_formation_violation(action):
    """jsonschema describes the value recursively; at 1,000 levels that overflowed the stack."""
    field = "chargePointVendor" if action == "BootNotification" else "idTag"
    payload = frames.parse(f'[2,"d","{action}",{{"{field}":{nested(1000)}}}]').payload
    with pytest.raises(OcppError) as refused:
        validation.validate_request(action, payload)
    assert (refused.value.code, refused.value.description) == (
        errors.FORMATION_VIOLATION,
        "payload nests too deeply",
    )


def test_storable_replaces_only_what_nests_too_deeply():
    assert frames.storable({"a": [1]}) == {"a": [1]}
    deep: list = [1]
    for _ in range(100):
        deep = [deep]
    assert frames.storable({"details": deep}) == {"invalidFrame": "nests deeper than 32 levels"}
