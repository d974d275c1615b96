"""Portable SQL helpers for the idempotent writes at-least-once delivery needs.

A worker writes a whole batch of exchanges at once. On PostgreSQL each helper sends the batch as
one statement whose rows arrive as one JSON document (`json_to_recordset`): the statement's text is the
same for any batch size, so the driver prepares it once, and no row costs a round of Python
parameter handling or a statement execution in the server. SQLite takes the rows through the
driver's executemany.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import (
    Insert,
    TableValuedAlias,
    Text,
    TypeDecorator,
    Update,
    bindparam,
    cast,
    column,
    func,
    or_,
    select,
    update,
)
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
    """INSERT rows (all with the same keys), skipping any that collide on `conflict_columns`;
    returns how many were inserted, or None when not `counted`.

    Uses the backend's own `ON CONFLICT DO NOTHING`, so two workers racing on the same message never
    raise and never store it twice (nor do two copies within one batch). Counting needs RETURNING
    (only inserted rows come back), not `rowcount`, which psycopg reports as -1 for multi-row
    statements and would read as "inserted".
    """
    if not rows:
        return 0 if counted else None
    table = model.__table__
    if _dialect(session) == "postgresql":
        source = _recordset(session, table, rows)
        statement = (
            postgresql.insert(table)
            .from_select(list(rows[0]), select(source))
            .on_conflict_do_nothing(index_elements=conflict_columns)
        )
        parameters = None
    else:
        statement = insert_skipping_conflicts(session, model, conflict_columns)
        parameters = rows
    if not counted:
        session.execute(statement, parameters)
        return None
    statement = statement.returning(table.primary_key.columns.values()[0])
    return len(session.execute(statement, parameters).all())


def insert_skipping_conflicts(session: Session, model: Any, conflict_columns: list[str]) -> Insert:
    """The backend's `INSERT … ON CONFLICT (conflict_columns) DO NOTHING` for `model`'s table."""
    module = postgresql if _dialect(session) == "postgresql" else sqlite
    return module.insert(model.__table__).on_conflict_do_nothing(index_elements=conflict_columns)


def update_if_lower(session: Session, model: Any, key: str, column: str, rows: list[dict[str, Any]]) -> None:
    """For each row (`key`, `column` and any other columns to set with it), update the record whose
    `key` matches where its `column` is NULL or lower than the row's: a write only ever raises it, so
    a late or repeated message changes nothing. The records are locked in `key` order, whatever the
    order of `rows`, so two workers raising overlapping records cannot deadlock."""
    if not rows:
        return
    if _dialect(session) == "postgresql":
        session.execute(_update_from_recordset(session, model.__table__, key, column, rows))
        return
    table = model.__table__
    # Parameters are prefixed: SQLAlchemy reserves bare column names for the SET clause.
    statement = (
        update(table)
        .where(table.c[key] == bindparam(f"new_{key}"))
        .where(or_(table.c[column].is_(None), table.c[column] < bindparam(f"new_{column}")))
        .values({name: bindparam(f"new_{name}") for name in rows[0] if name != key})
    )
    ordered = sorted(rows, key=lambda row: row[key])
    session.execute(statement, [{f"new_{name}": value for name, value in row.items()} for row in ordered])


def _update_from_recordset(
    session: Session, table: Any, key: str, column: str, rows: list[dict[str, Any]]
) -> Update:
    """`UPDATE … FROM` the rows as a record set, through a subquery that locks the records to change in
    key order (PostgreSQL locks the rows of `SELECT … ORDER BY … FOR …` in that order). The lock is
    the one an UPDATE of non-key columns takes, `FOR NO KEY UPDATE`: `FOR UPDATE` would also block
    every insert whose foreign key points at these records, and deadlock with them."""
    new = _recordset(session, table, rows)
    old = table.alias("old")
    raises = or_(old.c[column].is_(None), old.c[column] < new.c[column])
    locked = (
        select(new)
        .join(old, old.c[key] == new.c[key])
        .where(raises)
        .order_by(old.c[key])
        .with_for_update(of=old, key_share=True)
        .subquery("locked")
    )
    return (
        update(table)
        .where(table.c[key] == locked.c[key])
        .where(or_(table.c[column].is_(None), table.c[column] < locked.c[column]))
        .values({name: locked.c[name] for name in rows[0] if name != key})
    )


def _recordset(session: Session, table: Any, rows: list[dict[str, Any]]) -> TableValuedAlias:
    """`json_to_recordset(the rows as one JSON document) AS new(column type, …)`: encoding the batch
    is one orjson call and parsing it is the server's, where arrays per column cost the driver
    ~7 µs per value to escape. Our own column types still check what they are given (a naive
    timestamp is refused) before the rows are encoded."""
    dialect = session.get_bind().dialect
    names = list(rows[0])
    checks = [(name, table.c[name].type) for name in names if isinstance(table.c[name].type, TypeDecorator)]
    if checks:
        rows = [
            {**row, **{name: kind.process_bind_param(row[name], dialect) for name, kind in checks}}
            for row in rows
        ]
    document = orjson.dumps(rows, default=_json_scalar).decode()
    return (
        func.json_to_recordset(cast(bindparam("new_rows", document, type_=Text), postgresql.JSON))
        .table_valued(*(column(name, table.c[name].type) for name in names))
        .render_derived(name="new", with_types=True)
    )


def _json_scalar(value: Any) -> str:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not a column value")


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name
