"""Receipts: one per billed transaction that has a customer, numbered in one sequence without gaps.

The number comes from a counter row raised in the very database transaction that bills: a
settlement that rolls back takes its number with it, and the row lock (PostgreSQL) or the database
lock (SQLite) makes concurrent settlements take the numbers one after the other.
"""

from __future__ import annotations

from sqlalchemy import select, update

from csms.extensions import db
from csms.models import Receipt, ReceiptCounter
from csms.services.sql import insert_ignoring_conflicts

SERIES = "receipts"  # one operator per deployment, so one series; the printed prefix is a setting


def issue(transaction_id: int, session_id: int | None, user_id: int, total_minor: int, currency: str) -> int:
    """Number the transaction's receipt (in the caller's database transaction); returns the number.
    Called once per transaction, by whoever bills it (its unique key refuses a second)."""
    insert_ignoring_conflicts(db.session, ReceiptCounter, [{"series": SERIES, "last_number": 0}], ["series"])
    number = db.session.execute(
        update(ReceiptCounter)
        .where(ReceiptCounter.series == SERIES)
        .values(last_number=ReceiptCounter.last_number + 1)
        .returning(ReceiptCounter.last_number)
    ).scalar_one()
    db.session.add(
        Receipt(
            series=SERIES,
            number=number,
            transaction_id=transaction_id,
            session_id=session_id,
            user_id=user_id,
            total_minor=total_minor,
            currency=currency,
        )
    )
    return number


def of_transaction(transaction_id: int) -> Receipt | None:
    return db.session.scalar(select(Receipt).where(Receipt.transaction_id == transaction_id))
