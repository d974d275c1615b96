"""Customers as operators look them up: by email or idTag, with their wallet, ledger, tags and
sessions."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, or_, select

from csms.extensions import db
from csms.models import ChargingSession, IdTag, LedgerEntry, Role, User, Wallet


@dataclass(frozen=True)
class Listed:
    user: User
    wallet: Wallet | None
    id_tags: list[str]


@dataclass(frozen=True)
class Account:
    user: User
    wallet: Wallet | None
    id_tags: list[IdTag]
    ledger: list[LedgerEntry]
    sessions: list[ChargingSession]


def search(q: str = "", page: int = 1, per_page: int = 50) -> tuple[list[Listed], int]:
    """Customers whose email contains `q` or who hold an idTag equal to it (case-insensitive, as
    OCPP compares idTags), by email."""
    query = (
        select(User, Wallet).outerjoin(Wallet, Wallet.user_id == User.id).where(User.role == Role.CUSTOMER)
    )
    if q:
        tagged = select(IdTag.user_id).where(
            func.upper(IdTag.id_tag) == q.upper(), IdTag.user_id.is_not(None)
        )
        query = query.where(or_(User.email.ilike(f"%{q}%"), User.id.in_(tagged)))
    total = db.session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = db.session.execute(query.order_by(User.email).offset((page - 1) * per_page).limit(per_page)).all()
    tags: dict[int, list[str]] = {}
    if rows:
        ids = [user.id for user, _ in rows]
        for user_id, tag in db.session.execute(
            select(IdTag.user_id, IdTag.id_tag).where(IdTag.user_id.in_(ids)).order_by(IdTag.id_tag)
        ):
            tags.setdefault(user_id, []).append(tag)
    return [Listed(user, wallet, tags.get(user.id, [])) for user, wallet in rows], total


def account(user_id: int, ledger_limit: int = 100, session_limit: int = 50) -> Account | None:
    user = db.session.get(User, user_id)
    if user is None:
        return None
    wallet = db.session.scalar(select(Wallet).where(Wallet.user_id == user_id))
    ledger = []
    if wallet is not None:
        ledger = list(
            db.session.scalars(
                select(LedgerEntry)
                .where(LedgerEntry.wallet_id == wallet.id)
                .order_by(LedgerEntry.id.desc())
                .limit(ledger_limit)
            )
        )
    tags = list(db.session.scalars(select(IdTag).where(IdTag.user_id == user_id).order_by(IdTag.id_tag)))
    sessions = list(
        db.session.scalars(
            select(ChargingSession)
            .where(ChargingSession.user_id == user_id)
            .order_by(ChargingSession.id.desc())
            .limit(session_limit)
        )
    )
    return Account(user, wallet, tags, ledger, sessions)
