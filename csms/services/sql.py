"""Portable SQL helpers for the idempotent writes at-least-once delivery needs."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Insert, bindparam, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def insert_ignoring_conflicts(
    session: Session,
    model: Any,
    rows: list[dict[str, Any]],
    conflict_columns: list[str],
    *,
    counted: bool = True,
) -> int | None:
    """INSERT rows, skipping any that collide on `conflict_columns`; returns how many were inserted,
    or None when not `counted`.

    Uses the backend's own `ON CONFLICT DO NOTHING`, so two workers racing on the same message never
    raise and never store it twice. Counting needs RETURNING (only inserted rows come back), not
    `rowcount`, which psycopg reports as -1 for multi-row inserts and would read as "inserted". Bulk
    writes that need no count skip it: without RETURNING the rows go through the driver's pipelined
    executemany of one prepared statement, where a RETURNING insert of hundreds of rows is sent as
    huge multi-row statements the driver re-parses every time.
    """
    if not rows:
        return 0 if counted else None
    statement = insert_skipping_conflicts(session, model, conflict_columns)
    if not counted:
        session.execute(statement, rows)
        return None
    statement = statement.returning(model.__table__.primary_key.columns.values()[0])
    return len(session.execute(statement, rows).all())


def insert_skipping_conflicts(session: Session, model: Any, conflict_columns: list[str]) -> Insert:
    """The backend's `INSERT … ON CONFLICT (conflict_columns) DO NOTHING` for `model`'s table."""
    dialect = session.get_bind().dialect.name
    module = postgresql if dialect == "postgresql" else sqlite
    return module.insert(model.__table__).on_conflict_do_nothing(index_elements=conflict_columns)


def update_if_lower(session: Session, model: Any, key: str, column: str, rows: list[dict[str, Any]]) -> None:
    """For each row (`key`, `column` and any other columns to set with it), update the record whose
    `key` matches where its `column` is NULL or lower than the row's: a write only ever raises it, so
    a late or repeated message changes nothing. One executemany for all rows, in the given order (the
    order rows are locked in)."""
    if not rows:
        return
    table = model.__table__
    # Parameters are prefixed: SQLAlchemy reserves bare column names for the SET clause.
    statement = (
        update(table)
        .where(table.c[key] == bindparam(f"new_{key}"))
        .where(or_(table.c[column].is_(None), table.c[column] < bindparam(f"new_{column}")))
        .values({name: bindparam(f"new_{name}") for name in rows[0] if name != key})
    )
    session.execute(statement, [{f"new_{name}": value for name, value in row.items()} for row in rows])
