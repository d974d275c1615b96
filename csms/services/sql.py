"""Portable SQL helpers for the idempotent writes at-least-once delivery needs."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

# Bound parameters per statement: PostgreSQL allows 65,535 and SQLite (since 3.32) 32,766.
_MAX_PARAMETERS = 30_000


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
    inserted = 0
    step = max(1, _MAX_PARAMETERS // len(rows[0]))
    for start in range(0, len(rows), step):
        statement = (
            module.insert(table)
            .values(rows[start : start + step])
            .on_conflict_do_nothing(index_elements=conflict_columns)
            .returning(table.primary_key.columns.values()[0])
        )
        inserted += len(session.execute(statement).all())
    return inserted
