"""CMS events: every change an operator makes to stations, charge points and tariffs, stored once."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from csms.extensions import db
from csms.models import CmsEvent
from csms.services.sql import insert_ignoring_conflicts


def record_event(event: dict[str, Any]) -> bool:
    """Add the event to the current transaction; False when it was stored before."""
    row = {
        "event_id": event["event_id"],
        "type": event["type"],
        "entity_type": event["entity_type"],
        "entity_id": str(event["entity_id"]),
        "payload": event.get("payload"),
        "actor_user_id": event.get("actor_user_id"),
        "occurred_at": datetime.fromisoformat(event["occurred_at"]),
    }
    return insert_ignoring_conflicts(db.session, CmsEvent, [row], ["event_id"]) == 1
