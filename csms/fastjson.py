"""JSON on the hot paths — OCPP frames and the messages the web process hands to the workers —
through orjson, about ten times faster than the standard library's encoder with
`ensure_ascii=False` (figures in bench/README.md). orjson refuses integers beyond 64 bits, which a
REST client can send; the standard library encodes those, so no value that encoded before fails now.
Decoding stays orjson's: standard JSON (no NaN or Infinity, no lone surrogates), integers beyond
64 bits read as floats.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson
from dramatiq.encoder import DecodeError, Encoder

loads = orjson.loads
JSONDecodeError = orjson.JSONDecodeError  # a ValueError


def dumps(value: Any, default: Callable[[Any], Any] | None = None) -> bytes:
    """Compact UTF-8 JSON; `default` turns what neither library encodes into something they do."""
    try:
        return orjson.dumps(value, default=default)
    except TypeError:  # an integer beyond 64 bits
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=default).encode()


class TextJson:
    """`dumps` to text and `loads`, as the `json` module offers them, for a library that takes a JSON
    module: python-socketio's message queue, which encodes every event a worker emits."""

    @staticmethod
    def dumps(value: Any) -> str:
        return dumps(value).decode()

    loads = staticmethod(loads)


class DramatiqEncoder(Encoder):
    """Dramatiq's message encoding, JSON as with its default encoder (messages stay readable by
    either), through `dumps` and orjson."""

    def encode(self, data: Any) -> bytes:
        return dumps(data)

    def decode(self, data: bytes) -> Any:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise DecodeError(f"failed to decode message {data!r}", data, exc) from None
