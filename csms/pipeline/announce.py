"""Announcing operators' changes (`cms.<entity>.<created|updated|deleted>`) to the `cms_events`
actor, through the node's hand-off: bounded, and parked in the outbox when RabbitMQ is away."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from flask import current_app

from csms.pipeline.addresses import RECORD_CMS_EVENTS


def announce(kind: str, entity_type: str, entity_id: Any, payload: dict | None, actor_user_id: int) -> None:
    event = {
        "event_id": str(uuid.uuid4()),
        "type": f"cms.{entity_type}.{kind}",
        "entity_type": entity_type,
        "entity_id": str(entity_id),
        "payload": payload,
        "actor_user_id": actor_user_id,
        "occurred_at": datetime.now(UTC).isoformat(),
    }
    current_app.extensions["ocpp"].handoff.submit(RECORD_CMS_EVENTS, event, durable=False)
