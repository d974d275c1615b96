"""The outside world: integration events relayed from their outbox, and webhook deliveries.

`relay_events` is kicked after every commit that emitted events (`csms.services.events`) and every
`EVENTS_SWEEP_INTERVAL` by each worker (`csms.broker.EventsSweep`), so an event whose kick was lost
still leaves. It publishes the oldest unpublished events to `events_exchange` (production mode; the
embedded mode has no exchange), adds a delivery for each matching webhook, and marks them published
in one transaction: if the commit fails after publishing, they are published again (at least once;
consumers de-duplicate on `eventId`). Several relays at once take disjoint rows (SKIP LOCKED).

`deliver_webhook` has its own queue and short timeouts: a slow endpoint delays only other webhook
deliveries, never the pipeline.
"""

from __future__ import annotations

from datetime import timedelta

import dramatiq
from flask import current_app

from actors import priorities
from csms import metrics
from csms.broker import SWEEP, is_embedded
from csms.extensions import db
from csms.pipeline.events_exchange import EventsExchange
from csms.services import events, webhooks

BATCH = 500
OVERDUE_GRACE = timedelta(seconds=60)


@dramatiq.actor(
    queue_name="integration_events",
    max_retries=20,
    min_backoff=1_000,
    max_backoff=60_000,
    time_limit=300_000,
    priority=priorities.OUTSIDE,
)
def relay_events(kicks: list) -> None:
    """Publish every committed event not yet published, oldest first; a sweep's run then resends
    lost deliveries and forgets events past their retention."""
    app = current_app._get_current_object()
    exchange = None
    if not is_embedded(app):
        exchange = app.extensions.get("events_exchange")
        if exchange is None:
            exchange = app.extensions["events_exchange"] = EventsExchange(app.config["RABBITMQ_URL"])
    while True:
        batch = events.unpublished(BATCH)
        if not batch:
            db.session.rollback()
            break
        if exchange is not None:
            exchange.publish(batch)
        deliveries = webhooks.queue_deliveries(batch)
        events.mark_published([event.id for event in batch])
        areas = [event.routing_key.split(".", 1)[0] for event in batch]  # before the commit expires them
        db.session.commit()
        for area in areas:
            metrics.EVENTS_PUBLISHED.labels(area).inc()
        for delivery_id in deliveries:
            deliver_webhook.send(delivery_id, 0)
        if len(batch) < BATCH:
            break
    if SWEEP in kicks:
        for delivery_id, attempts in webhooks.overdue(OVERDUE_GRACE):
            deliver_webhook.send(delivery_id, attempts)
        events.purge_published(timedelta(hours=app.config["EVENTS_RETENTION_HOURS"]))
        webhooks.purge_log(timedelta(days=app.config["WEBHOOK_LOG_DAYS"]))
        db.session.commit()


@dramatiq.actor(
    queue_name="webhooks",
    max_retries=5,
    min_backoff=1_000,
    max_backoff=60_000,
    time_limit=60_000,
    priority=priorities.OUTSIDE,
)
def deliver_webhook(delivery_id: int, attempt: int) -> None:
    """Make one attempt of a delivery; a failed one is sent again after its backoff (its own
    schedule, not Dramatiq's retries, which are kept for database errors)."""
    retry_in = webhooks.attempt(delivery_id, attempt, webhooks.Settings.of(current_app.config))
    if retry_in is not None:
        deliver_webhook.send_with_options(args=(delivery_id, attempt + 1), delay=int(retry_in * 1000))
