"""Portable SQL helpers for the idempotent writes at-least-once delivery needs."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def insert_ignoring_conflicts(
    session: Session, model: Any, rows: list[dict[str, Any]], conflict_columns: list[str]
) -> int:
    """INSERT rows, skipping any that collide on `conflict_columns`; returns how many were inserted.

    Uses the backend's own `ON CONFLICT DO NOTHING`, so two workers racing on the same message never
    raise and never store it twice.
    """
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    module = postgresql if dialect == "postgresql" else sqlite
    # Counted with RETURNING (only inserted rows come back), not `rowcount`: for multi-row inserts
    # psycopg reports -1, which would read as "inserted" and defeat every idempotency check here.
    table = model.__table__
    statement = (
        module.insert(table)
        .values(rows)
        .on_conflict_do_nothing(index_elements=conflict_columns)
        .returning(table.primary_key.columns.values()[0])
    )
    return len(session.execute(statement).all())
