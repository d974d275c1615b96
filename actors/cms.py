"""CMS events: operator changes to stations, charge points and tariffs, stored and announced."""

import dramatiq

from csms.realtime import publish
from csms.services import cms


@dramatiq.actor(queue_name="cms_events", max_retries=10, min_backoff=500, max_backoff=60_000)
def record_cms_event(event: dict) -> None:
    """Store the event once and tell operators (`cms:changed`)."""
    if cms.record_event(event):
        publish("cms:changed", event, [])
