"""CMS events: operator changes to stations, charge points and tariffs, stored and announced."""

import dramatiq

from actors import priorities
from actors.notifications import publish_many
from csms.extensions import db
from csms.services import cms
from csms.services import events as integration


def _integration_data(event: dict) -> dict:
    return {
        "entityType": event["entity_type"],
        "entityId": event["entity_id"],
        "entity": event.get("payload"),
        "actorUserId": event.get("actor_user_id"),
        "occurredAt": event["occurred_at"],
    }


@dramatiq.actor(
    queue_name="cms_events",
    max_retries=10,
    min_backoff=500,
    max_backoff=60_000,
    priority=priorities.BOOKKEEPING,
)
def record_cms_events(events: list) -> None:
    """Store each event once and tell operators (`cms:changed`) of the new ones."""
    new = [event for event in events if cms.record_event(event)]
    integration.emit_many((event["type"], _integration_data(event), event["event_id"]) for event in new)
    db.session.commit()
    publish_many([("cms:changed", event, []) for event in new])
