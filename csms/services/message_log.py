"""The OCPP message log: every frame a charger sent or received, as handed off by the gateway."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from csms.extensions import db
from csms.models import OcppMessage
from csms.services.sql import insert_ignoring_conflicts


def to_rows(exchange: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "event_id": frame["event_id"],
            "charge_point_id": exchange["charge_point_id"],
            "node_id": exchange.get("node_id"),
            "direction": frame["direction"],
            "message_type": frame["message_type"],
            "unique_id": frame["unique_id"],
            "action": frame.get("action"),
            "payload": frame.get("payload"),
            "error_code": frame.get("error_code"),
            "error_description": frame.get("error_description"),
            "received_at": datetime.fromisoformat(frame["at"]),
        }
        for frame in exchange["frames"]
    ]


def record(exchanges: Iterable[dict[str, Any]]) -> None:
    """Add the exchanges' frames to the current transaction (a frame stored before is skipped). The
    caller commits, together with whatever else the exchanges changed."""
    rows = [row for exchange in exchanges for row in to_rows(exchange)]
    insert_ignoring_conflicts(db.session, OcppMessage, rows, ["event_id"], counted=False)
