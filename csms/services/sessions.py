"""A customer's charging session: the prepaid hold, the session record, and releasing the hold when
charging never starts. Settlement after charging is in `billing`."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from csms.extensions import db
from csms.models import (
    ChargePoint,
    ChargingSession,
    Connector,
    IdTag,
    LedgerEntry,
    LedgerKind,
    SessionState,
    Wallet,
)
from csms.services import wallet as wallet_service
from csms.services.errors import Conflict, InvalidInput, NotFound


def open_session(
    user_id: int, charge_point_id: str, connector_id: int, prepaid_minor: int
) -> ChargingSession:
    """Hold `prepaid_minor` from the wallet and create the session, in one transaction.

    The hold is a conditional update (`available >= amount`), so two concurrent starts can never
    overdraw a wallet; the partial unique index refuses a second active session on the connector.
    """
    if prepaid_minor <= 0:
        raise InvalidInput("amount must be positive", code="invalid_amount")
    point = db.session.scalar(select(ChargePoint).where(ChargePoint.charge_point_id == charge_point_id))
    if point is None:
        raise NotFound(f"unknown charge point {charge_point_id!r}", code="charge_point_not_found")
    exists = db.session.scalar(
        select(Connector.id).where(
            Connector.charge_point_id == point.id, Connector.connector_id == connector_id
        )
    )
    if connector_id < 1 or not exists:
        raise NotFound(
            f"charge point {charge_point_id!r} has no connector {connector_id}", code="connector_not_found"
        )
    wallet = db.session.scalar(select(Wallet).where(Wallet.user_id == user_id))
    if wallet is None:
        raise Conflict("this account has no wallet", code="no_wallet")
    id_tag = db.session.scalar(
        select(IdTag.id_tag).where(IdTag.user_id == user_id, IdTag.status == "Accepted")
    )
    if id_tag is None:
        raise Conflict("this account has no usable idTag", code="no_id_tag")
    if not wallet_service.hold(wallet, prepaid_minor):
        db.session.rollback()
        raise Conflict("insufficient funds", code="insufficient_funds")
    session = ChargingSession(
        user_id=user_id,
        charge_point_id=point.id,
        connector_id=connector_id,
        id_tag=id_tag,
        tariff_id=point.tariff_id,
        currency=wallet.currency,
        prepaid_minor=prepaid_minor,
    )
    db.session.add(session)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise Conflict("the connector already has an active session", code="connector_busy") from None
    wallet_service.record_hold(
        wallet,
        session.id,
        prepaid_minor,
        f"Prepaid for session {session.id} at {charge_point_id}/{connector_id}",
    )
    db.session.commit()
    return session


def release(session_id: int, state: str, reason: str) -> bool:
    """End a session that never charged (charger rejected, offline, timed out) and give the whole hold
    back, as a refund entry: once, even if called twice."""
    session = db.session.get(ChargingSession, session_id, with_for_update=True)
    if (
        session is None
        or session.transaction_id is not None
        or session.state
        not in (
            SessionState.REQUESTED,
            SessionState.ACCEPTED,
        )
    ):
        db.session.rollback()
        return False
    wallet_id = db.session.scalar(select(Wallet.id).where(Wallet.user_id == session.user_id))
    db.session.add(
        LedgerEntry(
            wallet_id=wallet_id,
            kind=LedgerKind.REFUND,
            amount_minor=session.prepaid_minor,
            currency=session.currency,
            session_id=session.id,
            description=f"Session {session.id} did not start: {reason}"[:255],
        )
    )
    db.session.execute(
        update(Wallet)
        .where(Wallet.id == wallet_id)
        .values(
            held_minor=Wallet.held_minor - session.prepaid_minor,
            available_minor=Wallet.available_minor + session.prepaid_minor,
        )
    )
    session.state = state
    session.failure_reason = reason[:255]
    wallet_service.announce_balance(session.user_id)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return False
    return True
