"""The OCPP message log: every frame a charger sent or received, as handed off by the gateway."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from csms.extensions import db
from csms.models import OcppMessage
from csms.services.sql import insert_ignoring_conflicts


def to_row(event: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": event["event_id"],
        "charge_point_id": event["charge_point_id"],
        "direction": event["direction"],
        "message_type": event["message_type"],
        "unique_id": event["unique_id"],
        "action": event.get("action"),
        "payload": event.get("payload"),
        "error_code": event.get("error_code"),
        "node_id": event.get("node_id"),
        "received_at": datetime.fromisoformat(event["received_at"]),
    }


def record(event: dict[str, Any]) -> bool:
    """Store one frame event; returns False when it was already stored (a redelivery)."""
    inserted = insert_ignoring_conflicts(db.session, OcppMessage, [to_row(event)], ["event_id"])
    db.session.commit()
    return inserted == 1
