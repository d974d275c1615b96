"""Values a charger may send that the OCPP 1.6 schemas allow but the database cannot hold.

The schemas bound string lengths and enums, not integers (a connectorId of 2^63), decimal strings
("1e17", "1e999999999"), nor the NUL character, which PostgreSQL refuses in text and jsonb. Such a
frame is valid OCPP, so the gateway answers it with a CALLRESULT; then the workers must apply it:
one unstorable value may not fail the database transaction that stops a session or stores a batch.
So each value is bounded where it is stored: clamped, replaced, or dropped with a reason, and the
reasons are logged with the charger's id when the exchange is applied (`Exchange.notes`).

This happens on the worker side, when an exchange is read, not in the gateway: the web process's
CPU per message is what limits a node's chargers, the workers apply every exchange once anyway,
and messages queued before an upgrade (or parked in the outbox) are repaired too.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import orjson

from csms.models import CommandAudit, OcppMessage

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
# A meter reading in Wh: what `meter_samples.value` (Numeric(20, 4)) holds, and a register or
# meterStop beyond it is not a meter's. Kept under BIGINT so energies and costs computed from two
# readings stay storable too.
MAX_READING = Decimal(10) ** 16
_SAMPLE_STEP = Decimal("0.0001")
# PostgreSQL text and jsonb cannot hold U+0000; the Unicode replacement character marks where it was.
NUL, NUL_REPLACEMENT = "\x00", "\ufffd"
_ESCAPED_NUL = b"\\u0000"  # how orjson writes U+0000

# Frame fields that go to length-bound columns of the message log (their values come from the
# charger: an unknown action's name, the code and text of a charger's CALLERROR).
_FRAME_LIMITS = {
    name: OcppMessage.__table__.c[name].type.length
    for name in ("unique_id", "action", "error_code", "error_description")
}
_ACTION_LIMIT = _FRAME_LIMITS["action"]
_COMMAND_LIMITS = {
    name: CommandAudit.__table__.c[name].type.length for name in ("error_code", "error_description")
}


def int32(value: Any) -> int | None:
    """The value when it is an integer an INTEGER column holds (ids, connector numbers), else None;
    integers beyond 64 bits arrive as floats from the JSON decoder and are not integers here."""
    return value if type(value) is int and INT32_MIN <= value <= INT32_MAX else None


def reading(value: Any) -> int | None:
    """The value when it is a plausible register reading in Wh (an integer, 0 <= value < 10^16)."""
    return value if type(value) is int and 0 <= value < MAX_READING else None


def sample(value: Decimal) -> Decimal | None:
    """A sampled value as `meter_samples.value` stores it (rounded to 4 decimals, as PostgreSQL
    would), or None when it is not a finite number below 10^16 once rounded."""
    if not (value.is_finite() and -MAX_READING < value < MAX_READING):
        return None
    rounded = value.quantize(_SAMPLE_STEP, rounding=ROUND_HALF_UP)
    return rounded if -MAX_READING < rounded < MAX_READING else None


def clean_exchange(raw: dict[str, Any]) -> list[str]:
    """Make an exchange's frames storable in the message log, in place: NUL characters replaced
    anywhere (keys too), column-bound frame fields cut to their column. Returns what was changed.

    Cheap for a common exchange: one encoding looks for NUL (only an exchange that has one is
    walked), and only a CALLERROR or a refused unknown action has fields that can be too long (the
    gateway cuts the unique id itself)."""
    notes: list[str] = []
    try:
        has_nul = _ESCAPED_NUL in orjson.dumps(raw)
    except TypeError:  # an integer beyond 64 bits: look the slow way
        has_nul = _walk_has_nul(raw)
    if has_nul:
        raw["frames"] = [_without_nul(frame) for frame in raw["frames"]]
        if raw.get("command") is not None:
            raw["command"] = _without_nul(raw["command"])
        notes.append("NUL characters replaced by U+FFFD")
    for frame in raw["frames"]:
        if frame["message_type"] == 4 or len(frame.get("action") or "") > _ACTION_LIMIT:
            _cut(frame, _FRAME_LIMITS, notes)
    command = raw.get("command")
    if command is not None and command.get("error_code") is not None:
        _cut(command, _COMMAND_LIMITS, notes)
    return notes


def _cut(record: dict[str, Any], limits: dict[str, int], notes: list[str]) -> None:
    for name, limit in limits.items():
        value = record.get(name)
        if isinstance(value, str) and len(value) > limit:
            record[name] = value[:limit]
            notes.append(f"{name} cut to {limit} characters")


def _walk_has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return NUL in value
    if isinstance(value, dict):
        return any(_walk_has_nul(k) or _walk_has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_walk_has_nul(item) for item in value)
    return False


def _without_nul(value: Any) -> Any:
    """A copy without NUL characters. Payloads are at most a few levels deep: the gateway stores
    deeper ones as text (see `csms.ocpp.frames.nests_deeper`)."""
    if isinstance(value, str):
        return value.replace(NUL, NUL_REPLACEMENT)
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    return value
