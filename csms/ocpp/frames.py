"""OCPP-J framing (§4): parse `[2, id, action, payload]`, `[3, id, payload]`, `[4, id, code, text,
details]`, and encode replies. A frame that cannot be trusted raises `FrameError`, which carries the
message id when one could be read, so the caller can answer it; without an id it can only be dropped.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from csms import fastjson
from csms.ocpp import errors

CALL, CALLRESULT, CALLERROR = 2, 3, 4
MAX_UNIQUE_ID = 36  # OCPP-J 1.6 §4.1.4: the unique id is at most 36 characters
# The deepest 1.6 payload (SetChargingProfile) nests 6 levels. JSON nested far deeper (the decoder
# takes up to 1,024) would overflow recursive code downstream: the validators, the encoder of the
# hand-off (orjson stops at 255 levels, the standard library at Python's recursion limit).
MAX_DEPTH = 32
TOO_DEEP = "frame nests too deeply"
# Reads the id out of a frame that is not valid JSON, e.g. `[2,"42","Heartbeat",{` (truncated).
_ID_IN_BROKEN_FRAME = re.compile(r'^\s*\[\s*[234]\s*,\s*"((?:[^"\\]|\\.){1,255})"')


class Call(NamedTuple):
    unique_id: str
    action: str
    payload: dict[str, Any]


class CallResult(NamedTuple):
    unique_id: str
    payload: dict[str, Any]


class CallError(NamedTuple):
    unique_id: str
    error_code: str
    error_description: str
    error_details: Any


class FrameError(Exception):
    def __init__(
        self, description: str, unique_id: str | None = None, code: str = errors.FORMATION_VIOLATION
    ):
        super().__init__(description)
        self.description = description
        self.unique_id = unique_id
        self.code = code


def _id_of(frame: list) -> str | None:
    return frame[1] if len(frame) > 1 and isinstance(frame[1], str) else None


def parse(raw: str | bytes) -> Call | CallResult | CallError:
    """Parse one WebSocket message into a frame, or raise `FrameError`."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise FrameError("frame is not UTF-8 text") from None
    try:
        frame = fastjson.loads(raw)
    except fastjson.JSONDecodeError as exc:
        match = _ID_IN_BROKEN_FRAME.match(raw)
        description = TOO_DEEP if "depth" in str(exc) else "frame is not valid JSON"
        raise FrameError(description, match.group(1) if match else None) from None
    if not isinstance(frame, list) or not frame:
        raise FrameError("frame is not a JSON array")
    unique_id = _id_of(frame)
    if unique_id is None:
        raise FrameError("frame has no string unique id")
    if len(unique_id) > MAX_UNIQUE_ID:
        raise FrameError(f"unique id longer than {MAX_UNIQUE_ID} characters", unique_id)
    kind = frame[0]
    if kind == CALL and type(kind) is int:
        if len(frame) != 4 or not isinstance(frame[2], str) or not isinstance(frame[3], dict):
            raise FrameError("a CALL is [2, uniqueId, action, {payload}]", unique_id)
        return Call(unique_id, frame[2], frame[3])
    if kind == CALLRESULT and type(kind) is int:
        if len(frame) != 3 or not isinstance(frame[2], dict):
            raise FrameError("a CALLRESULT is [3, uniqueId, {payload}]", unique_id)
        return CallResult(unique_id, frame[2])
    if kind == CALLERROR and type(kind) is int:
        if len(frame) != 5 or not isinstance(frame[2], str) or not isinstance(frame[3], str):
            raise FrameError(
                "a CALLERROR is [4, uniqueId, errorCode, errorDescription, {details}]", unique_id
            )
        return CallError(unique_id, frame[2], frame[3], frame[4])
    raise FrameError(f"unknown MessageTypeId {kind!r}", unique_id)


def nests_deeper(value: Any, limit: int = MAX_DEPTH) -> bool:
    """True when `value` nests lists or objects more than `limit` levels deep; iterative, and it
    stops at the first branch that goes too deep. For frames already refused: a valid payload is
    bounded by its schema."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = item.values()
        elif not isinstance(item, list):
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in item if isinstance(child, dict | list))
    return False


def storable(payload: Any) -> Any:
    """A payload a charger sent that no schema bounded (a CALLERROR's details, a refused answer), or
    a note in its place when it nests too deeply to be handed off."""
    if nests_deeper(payload):
        return {"invalidFrame": f"nests deeper than {MAX_DEPTH} levels"}
    return payload


def _dumps(value: Any) -> str:
    return fastjson.dumps(value).decode()


def encode_call(unique_id: str, action: str, payload: dict[str, Any]) -> str:
    return _dumps([CALL, unique_id, action, payload])


def encode_result(unique_id: str, payload: dict[str, Any]) -> str:
    return _dumps([CALLRESULT, unique_id, payload])


def encode_error(unique_id: str, code: str, description: str, details: dict[str, Any] | None = None) -> str:
    return _dumps([CALLERROR, unique_id, code, description, details or {}])
