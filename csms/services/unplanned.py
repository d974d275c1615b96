"""Transactions no app session was waiting for, billed all the same.

A charger may start a transaction that no waiting session claims: it accepted a RemoteStart after
the REST call gave up (504, hold refunded), a customer's tag was used like an RFID card, or it
started a second transaction on a connector whose first one it never reported stopped. Every kWh
must still end on someone's bill (the README's customer section states the policy):

- a newer start on a connector closes the transactions still open there that started before it: a
  connector carries one transaction at a time, so the charger has ended them even if their
  StopTransaction never came; their sessions are settled at once;
- a transaction whose idTag has a prepaid owner becomes a session of that owner, paid from a new hold: the
  amount of the session that gave up on that connector, else `UNPLANNED_HOLD`; a wallet that cannot
  cover it gives what it has and the charger is asked to stop at once (RemoteStopTransaction), as it
  is when the start was not answered Accepted, and when nobody can pay (an empty wallet, or the
  connector held by another customer's session waiting for its own start);
- a transaction already over when it is adopted (its Stop, or a newer start, was applied first) is
  settled at once;
- every other transaction (a postpaid owner's, a tag nobody owns, one nobody's wallet could hold
  for) is billed when it stops (`billing.bill_transaction`): from the owner's wallet when it covers
  the price, else as the owner's open balance; a tag nobody owns is priced and billed to no one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import and_, bindparam, literal_column, select
from sqlalchemy.orm import aliased

from csms.extensions import db
from csms.models import (
    AccountPolicy,
    ChargePoint,
    ChargingSession,
    IdTag,
    SessionState,
    Transaction,
    TransactionState,
    User,
    Wallet,
)
from csms.models.charging import ACTIVE_SESSION_STATES
from csms.services import billing, charging, command_queue
from csms.services import wallet as wallet_service

log = logging.getLogger(__name__)

SUPERSEDED_REASON = "Other"  # OCPP 1.6 Reason: the charger started another transaction on the connector


# A literal, not a bound parameter: a prepared statement's generic plan can use the partial index
# `ix_transactions_open` only when its predicate is in the query text.
_OPEN = literal_column(f"'{TransactionState.STARTED}'")


def _superseding_query():
    """The batch's starts (`ids`) that have an older transaction still open on their connector.
    Built once: an aliased query costs more to build than to run, at every Start batch."""
    new, old = aliased(Transaction), aliased(Transaction)
    return (
        select(new.id)
        .join(
            old,
            and_(
                old.charge_point_id == new.charge_point_id,
                old.connector_id == new.connector_id,
                old.state == _OPEN,
                old.started_at < new.started_at,
            ),
        )
        .where(new.id.in_(bindparam("ids", expanding=True)))
    )


_SUPERSEDING = _superseding_query()
_OWNED_TAGS = select(IdTag.id_tag).where(
    IdTag.id_tag.in_(bindparam("tags", expanding=True)), IdTag.user_id.is_not(None)
)


@dataclass(frozen=True)
class Candidates:
    """Which starts of a batch may need this module, found with two queries for the whole batch,
    so that the common start (a free connector, a tag already linked or nobody's) costs no more."""

    superseding: frozenset[int]  # transactions with an older one still open on their connector
    owned_tags: frozenset[str]  # idTags that have an owner

    @classmethod
    def of(cls, starts: list[tuple[int, str]]) -> Candidates:
        """`starts`: (transactionId, idTag) of the batch's StartTransactions."""
        if not starts:
            return cls(frozenset(), frozenset())
        superseding = db.session.scalars(
            _SUPERSEDING, {"ids": sorted({transaction_id for transaction_id, _ in starts})}
        )
        owned = db.session.scalars(_OWNED_TAGS, {"tags": sorted({id_tag for _, id_tag in starts})})
        return cls(frozenset(superseding), frozenset(owned))


def close_superseded(transaction_id: int) -> list[billing.Settlement]:
    """Stop the transactions still open on this one's connector that started before it, and settle
    their sessions in the caller's database transaction (which frees the connector's session slot).

    An older transaction ends where the newer one's meter starts, unless its own last reading is
    higher (a meter that restarted from zero): energy the register shows leaving the connector
    before the newer start belongs to the only transaction known to be open there.
    """
    new = db.session.get(Transaction, transaction_id)
    if new is None:
        return []
    older = db.session.scalars(
        select(Transaction.id).where(
            Transaction.charge_point_id == new.charge_point_id,
            Transaction.connector_id == new.connector_id,
            Transaction.state == _OPEN,
            Transaction.started_at < new.started_at,
        )
    ).all()
    if not older:
        return []
    # Locked in id order, as metering locks them, so the two cannot deadlock.
    db.session.scalars(
        select(Transaction.id)
        .where(Transaction.id.in_([*older, transaction_id]))
        .order_by(Transaction.id)
        .with_for_update()
    ).all()
    settlements = []
    for old_id in sorted(older):
        old = db.session.get(Transaction, old_id, populate_existing=True)
        last = max(old.meter_last_wh or old.meter_start_wh, old.meter_start_wh)
        meter_stop = new.meter_start_wh if new.meter_start_wh >= last else last
        log.warning(
            "transaction %s superseded by %s on charge point %s connector %s: closed at %s Wh",
            old_id,
            transaction_id,
            new.charge_point_id,
            new.connector_id,
            meter_stop,
        )
        stopped = charging.stop(
            new.charge_point_id,
            {
                "transactionId": old_id,
                "meterStop": meter_stop,
                "timestamp": new.started_at.isoformat(),
                "reason": SUPERSEDED_REASON,
            },
        )
        if stopped.session is not None:
            settlement = billing.settle_in_transaction(stopped.session.session_id)
            if settlement is not None and settlement.newly_settled:
                settlements.append(settlement)
        else:
            billing.bill_transaction(old_id)
    db.session.flush()
    return settlements


@dataclass(frozen=True)
class Adoption:
    """What became of a transaction no session claimed: the session now billing it (None when nobody
    can be billed), and its settlement when the transaction was already over."""

    linked: charging.Linked | None
    settlement: billing.Settlement | None = None


def adopt(
    transaction_id: int, charge_point_id: str, answered_status: str, default_hold_minor: int
) -> Adoption:
    """Open a session for the owner of the transaction's idTag, paid from a new hold.

    Call after `charging.link_session` found no session (it holds the transaction's row lock). A
    redelivered start finds the session by its transaction and never holds twice. A transaction
    already over (its Stop, or a newer start, came first) is settled at once, so its session never
    needs the connector's one active-session place.
    """
    transaction = db.session.get(Transaction, transaction_id)
    if transaction is None or transaction.billing is not None:
        return Adoption(None)  # billed already, as a transaction without a session
    user_id, policy = db.session.execute(
        select(IdTag.user_id, User.account_policy).join(User).where(IdTag.id_tag == transaction.id_tag)
    ).one_or_none() or (None, None)
    if policy == AccountPolicy.POSTPAID:
        return Adoption(None)  # charging on account: billed as the transaction stops
    wallet = (
        db.session.scalar(select(Wallet).where(Wallet.user_id == user_id).with_for_update())
        if user_id is not None
        else None
    )
    if wallet is None:
        return Adoption(None)  # not a customer's tag: priced as it stops, billed to no one (README)
    running = transaction.state == TransactionState.STARTED
    busy = running and db.session.scalar(
        select(ChargingSession.id).where(
            ChargingSession.charge_point_id == transaction.charge_point_id,
            ChargingSession.connector_id == transaction.connector_id,
            ChargingSession.state.in_(ACTIVE_SESSION_STATES),
        )
    )
    if busy:
        # Another customer's session holds the connector (waiting for its own start).
        _stop_unbilled(transaction, charge_point_id, f"connector held by session {busy}")
        return Adoption(None)
    given_up = db.session.scalar(
        select(ChargingSession)
        .where(
            ChargingSession.user_id == user_id,
            ChargingSession.charge_point_id == transaction.charge_point_id,
            ChargingSession.connector_id == transaction.connector_id,
            ChargingSession.id_tag == transaction.id_tag,
            ChargingSession.transaction_id.is_(None),
            ChargingSession.state.in_([SessionState.FAILED, SessionState.REJECTED]),
        )
        .order_by(ChargingSession.id.desc())
        .limit(1)
    )
    wanted = given_up.prepaid_minor if given_up is not None else default_hold_minor
    held = min(wanted, wallet.available_minor)
    if held <= 0:
        _stop_unbilled(transaction, charge_point_id, "the wallet is empty")
        return Adoption(None)
    stop_reason = None
    if not running:
        state = SessionState.COMPLETED  # settled below, in this database transaction
    elif answered_status != "Accepted":
        stop_reason, state = f"started although answered {answered_status}", SessionState.STOPPING
    elif held < wanted:
        stop_reason, state = "the wallet cannot cover the hold", SessionState.STOPPING
    else:
        state = SessionState.CHARGING
    if not wallet_service.hold(
        wallet, held
    ):  # spent meanwhile (SQLite takes no row lock): the retry reads again
        raise RuntimeError(f"wallet {wallet.id} changed while holding for transaction {transaction.id}")
    session = ChargingSession(
        user_id=user_id,
        charge_point_id=transaction.charge_point_id,
        connector_id=transaction.connector_id,
        id_tag=transaction.id_tag,
        tariff_id=db.session.scalar(
            select(ChargePoint.tariff_id).where(ChargePoint.id == transaction.charge_point_id)
        ),
        currency=wallet.currency,
        prepaid_minor=held,
        transaction_id=transaction.id,
        state=state,
        started_at=transaction.started_at,
    )
    db.session.add(session)
    db.session.flush()
    origin = f"after session {given_up.id} gave up" if given_up is not None else "outside an app session"
    wallet_service.record_hold(
        wallet,
        session.id,
        held,
        f"Prepaid for session {session.id}: transaction {transaction.id} at {charge_point_id}/"
        f"{transaction.connector_id} started {origin}",
    )
    linked = charging.Linked(session.id, user_id, transaction.id, not running)
    if not running:
        db.session.flush()
        return Adoption(linked, billing.settle_in_transaction(session.id))
    if stop_reason:
        charging.request_remote_stop(session.id, charge_point_id, transaction.id, stop_reason)
    return Adoption(linked)


def _stop_unbilled(transaction: Transaction, charge_point_id: str, reason: str) -> None:
    """Nobody's wallet can pay: ask the charger to stop at once (once per transaction)."""
    if transaction.state != TransactionState.STARTED:
        return
    log.warning("transaction %s cannot be billed (%s): asking for a stop", transaction.id, reason)
    command_queue.request(
        f"transaction:{transaction.id}:remote-stop",
        charge_point_id,
        "RemoteStopTransaction",
        {"transactionId": transaction.id},
        reason,
    )
