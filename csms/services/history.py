"""Transactions as operators look for them: filtered by charger, idTag, customer, state and dates,
with the customer and cost of their session, a page at a time or all of them for a CSV export."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, func, select

from csms.extensions import db
from csms.models import ChargePoint, ChargingSession, MeterSample, Transaction, User
from csms.models.charging import TransactionState

EXPORT_LIMIT = 100_000  # rows in one CSV export


@dataclass(frozen=True)
class Filters:
    charge_point_id: str = ""
    id_tag: str = ""
    customer: str = ""  # part of an email
    state: str = ""  # "running" or "stopped"
    since: datetime | None = None  # started at or after
    until: datetime | None = None  # started before


@dataclass(frozen=True)
class Row:
    transaction: Transaction
    charge_point_id: str
    customer: str | None
    cost_minor: int | None
    currency: str | None

    @property
    def energy_wh(self) -> int:
        tx = self.transaction
        if tx.energy_wh is not None:
            return tx.energy_wh
        return max((tx.meter_last_wh or tx.meter_start_wh) - tx.meter_start_wh, 0)


def _query(filters: Filters) -> Select:
    query = (
        select(
            Transaction,
            ChargePoint.charge_point_id,
            User.email,
            ChargingSession.cost_minor,
            ChargingSession.currency,
        )
        .join(ChargePoint, ChargePoint.id == Transaction.charge_point_id)
        .outerjoin(ChargingSession, ChargingSession.transaction_id == Transaction.id)
        .outerjoin(User, User.id == ChargingSession.user_id)
    )
    if filters.charge_point_id:
        query = query.where(ChargePoint.charge_point_id == filters.charge_point_id)
    if filters.id_tag:
        query = query.where(func.upper(Transaction.id_tag) == filters.id_tag.upper())  # CiString20
    if filters.customer:
        query = query.where(User.email.ilike(f"%{filters.customer}%"))
    if filters.state == "running":
        query = query.where(Transaction.state == TransactionState.STARTED)
    elif filters.state == "stopped":
        query = query.where(Transaction.state == TransactionState.STOPPED)
    if filters.since is not None:
        query = query.where(Transaction.started_at >= filters.since)
    if filters.until is not None:
        query = query.where(Transaction.started_at < filters.until)
    return query


def search(filters: Filters, page: int = 1, per_page: int = 50) -> tuple[list[Row], int]:
    """One page of the matching transactions, newest first, and how many match."""
    query = _query(filters)
    total = db.session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = db.session.execute(
        query.order_by(Transaction.id.desc()).offset((page - 1) * per_page).limit(per_page)
    )
    return [Row(*row) for row in rows], total


def one(transaction_id: int) -> Row | None:
    found = db.session.execute(_query(Filters()).where(Transaction.id == transaction_id)).first()
    return Row(*found) if found else None


def export(filters: Filters) -> Iterator[Row]:
    """Every matching transaction (at most `EXPORT_LIMIT`), newest first, streamed in batches."""
    rows = db.session.execute(
        _query(filters).order_by(Transaction.id.desc()).limit(EXPORT_LIMIT).execution_options(yield_per=1000)
    )
    for row in rows:
        yield Row(*row)


def samples(transaction_id: int, limit: int = 5000) -> list[MeterSample]:
    """A transaction's meter samples in time order."""
    return list(
        db.session.scalars(
            select(MeterSample)
            .where(MeterSample.transaction_id == transaction_id)
            .order_by(MeterSample.sampled_at, MeterSample.id)
            .limit(limit)
        )
    )
