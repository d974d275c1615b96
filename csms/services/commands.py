"""CSMS-initiated calls: the audit of every call sent, and calls the workers ask the web nodes to send."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update

from csms.extensions import db
from csms.models import CommandAudit, CommandRequest
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


def request(dedup_key: str, charge_point_id: str, action: str, payload: dict[str, Any], reason: str) -> bool:
    """Leave a call for the web node holding the charger; the same `dedup_key` is requested once."""
    row = {
        "dedup_key": dedup_key,
        "charge_point_id": charge_point_id,
        "action": action,
        "payload": payload,
        "reason": reason,
    }
    return insert_ignoring_conflicts(db.session, CommandRequest, [row], ["dedup_key"]) == 1


def claim_pending(connected: set[str], node_id: str, limit: int = 100) -> list[CommandRequest]:
    """Take the undispatched requests for chargers connected to this node; a claimed request is
    marked dispatched in the same transaction, so no other node sends it too."""
    query = (
        select(CommandRequest)
        .where(CommandRequest.dispatched_at.is_(None))
        .order_by(CommandRequest.id)
        .limit(limit)
    )
    if db.session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    claimed = [r for r in db.session.scalars(query) if r.charge_point_id in connected]
    now = datetime.now(UTC)
    for row in claimed:
        row.dispatched_at = now
        row.node_id = node_id
    db.session.commit()
    return claimed


def record_outcome(request_id: int, outcome: str) -> None:
    db.session.execute(
        update(CommandRequest).where(CommandRequest.id == request_id).values(outcome=outcome[:255])
    )
    db.session.commit()
