"""Integration events: what the CSMS tells the outside world, written to a transactional outbox.

`emit` adds an event to the caller's database transaction (the `integration_events` table, written
as it commits, one statement for all its events), so the event exists exactly when the effect it
announces was committed; after the commit a relay
(`actors.integration.relay_events`) publishes it to RabbitMQ's `events_exchange` and hands it to
matching webhooks, at least once. An actor redelivered after its commit emits the same events again:
give `emit` a `key` that names the occurrence and the event keeps its id (and is not stored twice
while its row is kept, `EVENTS_RETENTION_HOURS`), so consumers can de-duplicate on `eventId`.

Routing keys are dotted lower-case words, `<area>.<what>[.<happened>]`; the README lists them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, event, func, select, update
from sqlalchemy.orm import Session

from csms.extensions import db
from csms.fastjson import dumps
from csms.models import IntegrationEvent
from csms.services.sql import any_of, insert_ignoring_conflicts

SCHEMA_VERSION = 1
EXCHANGE = "events_exchange"
_NAMESPACE = uuid.UUID("5f1d3c1e-6f0e-4d8a-9a63-2f4c1f8e0b19")
_PENDING_ROWS = "csms_integration_event_rows"  # emitted, written when the transaction commits
_PENDING_FLAG = "csms_integration_events"  # written: kick the relay once committed

# Called after a commit that added events: set by the process that runs the relay (`csms.broker`).
after_commit_hook: Callable[[], None] | None = None


def emit(routing_key: str, data: dict[str, Any], *, key: str | None = None) -> str:
    """Add one event to the current transaction; returns its `eventId`."""
    return emit_many([(routing_key, data, key)])[0]


def emit_many(events: Iterable[tuple[str, dict[str, Any], str | None]]) -> list[str]:
    """Add `(routing_key, data, key)` events to the current transaction (written as it commits)."""
    now = datetime.now(UTC)
    rows = []
    for routing_key, data, key in events:
        event_id = str(uuid.uuid5(_NAMESPACE, f"{routing_key}\n{key}") if key is not None else uuid.uuid4())
        document = {
            "eventId": event_id,
            "schemaVersion": SCHEMA_VERSION,
            "type": routing_key,
            "occurredAt": now.isoformat(),
            "data": data,
        }
        rows.append(
            {
                "event_id": event_id,
                "routing_key": routing_key,
                "body": dumps(document).decode(),
                "created_at": now,
            }
        )
    if rows:
        db.session.info.setdefault(_PENDING_ROWS, []).extend(rows)
    return [row["event_id"] for row in rows]


@event.listens_for(Session, "before_commit")
def _write_pending(session: Session) -> None:
    """Every event of the transaction in one statement, as it commits: a batch of a few hundred
    exchanges emits an event for most of them, and a statement each cost more than their work."""
    rows = session.info.pop(_PENDING_ROWS, None)
    if rows:
        insert_ignoring_conflicts(session, IntegrationEvent, rows, ["event_id"], counted=False)
        session.info[_PENDING_FLAG] = True


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if session.info.pop(_PENDING_FLAG, False) and after_commit_hook is not None:
        after_commit_hook()


@event.listens_for(Session, "after_soft_rollback")
def _after_rollback(session: Session, previous_transaction: Any) -> None:
    session.info.pop(_PENDING_ROWS, None)
    session.info.pop(_PENDING_FLAG, None)


def unpublished(limit: int) -> list[IntegrationEvent]:
    """The oldest events not yet published. On PostgreSQL, rows another relay holds are skipped, so
    concurrent relays (several workers) publish each event once between them."""
    query = (
        select(IntegrationEvent)
        .where(IntegrationEvent.published_at.is_(None))
        .order_by(IntegrationEvent.id)
        .limit(limit)
    )
    if db.session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list(db.session.scalars(query))


def mark_published(ids: list[int]) -> None:
    if ids:
        db.session.execute(
            update(IntegrationEvent)
            .where(any_of(db.session, IntegrationEvent.id, ids))
            .values(published_at=datetime.now(UTC))
        )


def purge_published(retention: timedelta) -> int:
    """Forget published events older than `retention` (the window in which a redelivered actor
    message still finds its event and adds none)."""
    cutoff = datetime.now(UTC) - retention
    result = db.session.execute(delete(IntegrationEvent).where(IntegrationEvent.published_at < cutoff))
    return result.rowcount or 0


def backlog() -> int:
    """Events committed but not yet published."""
    query = select(func.count()).select_from(IntegrationEvent).where(IntegrationEvent.published_at.is_(None))
    return db.session.scalar(query) or 0


def matches(pattern: str, routing_key: str) -> bool:
    """Does `routing_key` match a topic pattern, as RabbitMQ's topic exchange decides: `*` is one
    word, `#` zero or more."""
    return _match(pattern.split("."), routing_key.split("."))


def _match(pattern: list[str], words: list[str]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_match(rest, words[i:]) for i in range(len(words) + 1))
    if not words:
        return False
    return (head == "*" or head == words[0]) and _match(rest, words[1:])
