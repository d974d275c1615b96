"""The outbox table as a queue of Dramatiq messages: written when the broker cannot take a message
(or always, in embedded mode), drained oldest first by a relay."""

from __future__ import annotations

from collections.abc import Iterable

import dramatiq
from sqlalchemy import delete, select

from csms.extensions import db
from csms.models import OutboxMessage
from csms.services.sql import insert_ignoring_conflicts


def park(messages: Iterable[dramatiq.Message]) -> None:
    """Store messages durably (committed on return). A message already parked is not parked twice."""
    rows = [{"message_id": m.message_id, "queue_name": m.queue_name, "body": m.encode()} for m in messages]
    try:
        insert_ignoring_conflicts(db.session, OutboxMessage, rows, ["message_id"])
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise


def oldest(limit: int, *, exclude: Iterable[str] = (), lock: bool = False) -> list[OutboxMessage]:
    """The oldest parked messages. With `lock` (PostgreSQL), rows another relay holds are skipped,
    so two web nodes draining one outbox never publish the same message."""
    query = select(OutboxMessage).order_by(OutboxMessage.id).limit(limit)
    excluded = list(exclude)
    if excluded:
        query = query.where(OutboxMessage.message_id.not_in(excluded))
    if lock and db.session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list(db.session.scalars(query))


def remove(message_ids: Iterable[str]) -> None:
    ids = list(message_ids)
    if ids:
        db.session.execute(delete(OutboxMessage).where(OutboxMessage.message_id.in_(ids)))


def backlog() -> int:
    from sqlalchemy import func

    return db.session.scalar(select(func.count()).select_from(OutboxMessage)) or 0


def add(messages: Iterable[dramatiq.Message]) -> None:
    """Put messages in the outbox inside the caller's transaction (the caller commits): they reach
    their actors if, and only if, the change that caused them commits (a web node's relay sends them
    on, csms.pipeline.handoff)."""
    rows = [{"message_id": m.message_id, "queue_name": m.queue_name, "body": m.encode()} for m in messages]
    insert_ignoring_conflicts(db.session, OutboxMessage, rows, ["message_id"])
