"""Portable SQL helpers for the idempotent writes at-least-once delivery needs.

A worker writes a whole batch of exchanges at once. On PostgreSQL each helper sends the batch as
one statement whose rows arrive as one JSON document (`json_to_recordset`): the statement is built
once per shape and its text is the same for any batch size, so the driver prepares it once, and no
row costs a round of Python parameter handling or a statement execution in the server (the worker's
CPU per message fell by two thirds: bench/README.md). SQLite takes the rows through the driver's
executemany.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Insert,
    Table,
    TableValuedAlias,
    Text,
    TypeDecorator,
    Update,
    any_,
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

from csms import fastjson


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
        statement = _insert_from_recordset(table, tuple(rows[0]), tuple(conflict_columns), counted)
        result = session.execute(statement, {"new_rows": _recordset_document(session, table, rows)})
    else:
        statement = insert_skipping_conflicts(session, model, conflict_columns)
        if counted:
            statement = statement.returning(table.primary_key.columns.values()[0])
        result = session.execute(statement, rows)
    return len(result.all()) if counted else None


def insert_skipping_conflicts(session: Session, model: Any, conflict_columns: list[str]) -> Insert:
    """The backend's `INSERT … ON CONFLICT (conflict_columns) DO NOTHING` for `model`'s table."""
    module = postgresql if _dialect(session) == "postgresql" else sqlite
    return module.insert(model.__table__).on_conflict_do_nothing(index_elements=conflict_columns)


def upsert(
    session: Session,
    model: Any,
    rows: list[dict[str, Any]],
    conflict_columns: list[str],
    *,
    only_if: Callable[[Table, Any], ColumnElement[bool]] | None = None,
) -> None:
    """INSERT rows (all with the same keys), or where one collides on `conflict_columns` set its other
    columns; `only_if(table, excluded)` limits the update to the records it holds true for (a newer
    row wins over an older one, never the reverse)."""
    if not rows:
        return
    module = postgresql if _dialect(session) == "postgresql" else sqlite
    statement = module.insert(model.__table__)
    excluded = statement.excluded
    statement = statement.on_conflict_do_update(
        index_elements=conflict_columns,
        set_={name: excluded[name] for name in rows[0] if name not in conflict_columns},
        where=only_if(model.__table__, excluded) if only_if is not None else None,
    )
    session.execute(statement, rows)


def update_if_lower(session: Session, model: Any, key: str, column: str, rows: list[dict[str, Any]]) -> None:
    """For each row (`key`, `column` and any other columns to set with it), update the record whose
    `key` matches where its `column` is NULL or lower than the row's: a write only ever raises it, so
    a late or repeated message changes nothing. The records are locked in `key` order, whatever the
    order of `rows`, so two workers raising overlapping records cannot deadlock."""
    if not rows:
        return
    if _dialect(session) == "postgresql":
        statement = _update_from_recordset(model.__table__, key, column, tuple(rows[0]))
        session.execute(statement, {"new_rows": _recordset_document(session, model.__table__, rows)})
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


@functools.cache
def _insert_from_recordset(
    table: Table, names: tuple[str, ...], conflict: tuple[str, ...], counted: bool
) -> Insert:
    """`INSERT … SELECT … FROM` the record set `ON CONFLICT DO NOTHING`, built once per shape: a
    statement's construction costs more than its execution with a few hundred rows."""
    statement = (
        postgresql.insert(table)
        .from_select(names, select(_recordset(table, names)))
        .on_conflict_do_nothing(index_elements=conflict)
    )
    return statement.returning(table.primary_key.columns.values()[0]) if counted else statement


@functools.cache
def _update_from_recordset(table: Table, key: str, column: str, names: tuple[str, ...]) -> Update:
    """`UPDATE … FROM` the record set, through a subquery that locks the records to change in key
    order (PostgreSQL locks the rows of `SELECT … ORDER BY … FOR …` in that order). The lock is the
    one an UPDATE of non-key columns takes, `FOR NO KEY UPDATE`: `FOR UPDATE` would also block every
    insert whose foreign key points at these records, and deadlock with them. Built once per shape."""
    new = _recordset(table, names)
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
        .values({name: locked.c[name] for name in names if name != key})
    )


def _recordset(table: Table, names: tuple[str, ...]) -> TableValuedAlias:
    """`json_to_recordset(:new_rows) AS new(column type, …)`: the rows arrive as one JSON document
    (`_recordset_document`), encoded by one orjson call (`fastjson.dumps`) and parsed by the server,
    where arrays per column cost the driver an escape per value."""
    document = cast(bindparam("new_rows", type_=Text), postgresql.JSON)
    return (
        func.json_to_recordset(document)
        .table_valued(*(column(name, table.c[name].type) for name in names))
        .render_derived(name="new", with_types=True)
    )


def _recordset_document(session: Session, table: Table, rows: list[dict[str, Any]]) -> str:
    """The rows as the JSON document `_recordset` reads. Our own column types still check what they
    are given (a naive timestamp is refused) before the rows are encoded."""
    dialect = session.get_bind().dialect
    checks = [(name, table.c[name].type) for name in rows[0] if isinstance(table.c[name].type, TypeDecorator)]
    if checks:
        rows = [
            {**row, **{name: kind.process_bind_param(row[name], dialect) for name, kind in checks}}
            for row in rows
        ]
    return fastjson.dumps(rows, default=_json_scalar).decode()


def _json_scalar(value: Any) -> str:
    """The text PostgreSQL reads a column value from, for the types JSON has none for (orjson
    encodes datetimes itself; the standard library, which takes integers beyond 64 bits, does not)."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()  # bytea's hex format
    raise TypeError(f"{type(value).__name__} is not a column value")


def any_of(session: Session, column: Any, values: Iterable[Any]) -> ColumnElement[bool]:
    """`column IN values`. On PostgreSQL as `column = ANY(array)`: one statement text for any number
    of values, which the driver prepares once, where an IN list is new text for every count."""
    values = list(values)
    if _dialect(session) == "postgresql":
        array_type = postgresql.ARRAY(column.type)
        return column == any_(cast(bindparam(None, values, type_=array_type), array_type))
    return column.in_(values)


def found_among(session: Session, column: Any, values: Iterable[Any], *conditions: Any) -> set[Any]:
    """Which of `values` appear in `column` on rows meeting `conditions`: one query for a batch,
    to skip per-row work where nothing waits (`any_of` on PostgreSQL)."""
    values = set(values)
    if not values:
        return set()
    return set(session.scalars(select(column).where(any_of(session, column, values), *conditions).distinct()))


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def epoch_seconds(session: Session, expression: Any) -> ColumnElement[float]:
    """A timestamp as seconds since 1970 (UTC), on either backend: PostgreSQL's timestamptz through
    `extract(epoch ...)`, SQLite's UTC text through `julianday`. Durations and overlaps are then plain
    arithmetic on numbers, the same SQL for both."""
    if _dialect(session) == "postgresql":
        return func.extract("epoch", expression)
    return (func.julianday(expression) - 2440587.5) * 86400.0


def least(session: Session, *values: Any) -> ColumnElement[Any]:
    return func.least(*values) if _dialect(session) == "postgresql" else func.min(*values)


def greatest(session: Session, *values: Any) -> ColumnElement[Any]:
    return func.greatest(*values) if _dialect(session) == "postgresql" else func.max(*values)
