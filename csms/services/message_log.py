"""The OCPP message log: every frame a charger sent or received, as handed off by the gateway."""

from __future__ import annotations

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


def record(exchange: dict[str, Any]) -> int:
    """Add an exchange's frames to the current transaction; returns how many were new (0 for a
    redelivery). The caller commits, together with whatever else the exchange changed."""
    return insert_ignoring_conflicts(db.session, OcppMessage, to_rows(exchange), ["event_id"])
