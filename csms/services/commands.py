"""CSMS-initiated calls: the audit of every call sent (the queue of calls waiting for their charger is
csms.services.command_queue)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from csms.extensions import db
from csms.models import CommandAudit
from csms.services.sql import insert_ignoring_conflicts


def record_audit(charge_point_id: str, request_frame: dict[str, Any], command: dict[str, Any]) -> bool:
    """Store the audit of one call (keyed by its request frame's event id); False for a redelivery."""
    requested_at = command.get("requested_at") or request_frame["at"]
    row = {
        "event_id": request_frame["event_id"],
        "charge_point_id": charge_point_id,
        "action": command["action"],
        "payload": request_frame.get("payload"),
        "unique_id": request_frame["unique_id"],
        "requested_by": command.get("requested_by"),
        "requested_at": datetime.fromisoformat(requested_at),
        "outcome": command["outcome"],
        "response": command.get("response"),
        "error_code": command.get("error_code"),
        "error_description": (command.get("error_description") or None)
        and command["error_description"][:255],
        "latency_ms": command.get("latency_ms"),
    }
    return insert_ignoring_conflicts(db.session, CommandAudit, [row], ["event_id"]) == 1
