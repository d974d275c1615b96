"""The life of an OCPP transaction after the gateway allocated its id: linking it to the customer's
session, stopping it, and what billing needs.

Start and Stop may be processed in either order and more than once; each step is a conditional
update, so the record ends the same whatever the order.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, or_, select

from csms.extensions import db
from csms.models import ChargingSession, QueuedCommand, SessionState, Transaction, TransactionState
from csms.models.charging import ACTIVE_SESSION_STATES
from csms.services import bounds, command_queue, metering
from csms.services.clock import parse_utc
from csms.services.sql import any_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Linked:
    session_id: int
    user_id: int
    transaction_id: int
    stopped: bool
    claimed: bool = False  # this call gave a waiting app session its transaction


def lock_transactions(transaction_ids: Iterable[int | None]) -> dict[int, int]:
    """Lock the named transactions' rows, in id order, for the rest of the database transaction;
    returns each existing one's charger key by id. Every batch that changes transactions
    (MeterValues, Start and Stop) locks them this way before anything else: in one order, two
    batches naming the same transactions wait for each other instead of deadlocking."""
    ids = set(transaction_ids) - {None}
    if not ids:
        return {}
    query = select(Transaction.id, Transaction.charge_point_id).where(any_of(db.session, Transaction.id, ids))
    locked = db.session.execute(query.order_by(Transaction.id).with_for_update())
    return {transaction_id: charge_point_pk for transaction_id, charge_point_pk in locked}


def lock_and_load_transactions(transaction_ids: Iterable[int | None]) -> dict[int, Transaction]:
    """`lock_transactions`, returning the transactions themselves (the caller keeps them: the
    session holds loaded objects only while someone does)."""
    ids = set(transaction_ids) - {None}
    if not ids:
        return {}
    query = select(Transaction).where(any_of(db.session, Transaction.id, ids)).order_by(Transaction.id)
    query = query.with_for_update().execution_options(populate_existing=True)  # as locked, not as cached
    return {t.id: t for t in db.session.scalars(query)}


def sessions_of(transaction_ids: Iterable[int]) -> dict[int, ChargingSession | None]:
    """The customer session of each of these transactions, or None: one query for a batch of
    Stops (`stop`'s `sessions`)."""
    ids = set(transaction_ids)
    found: dict[int, ChargingSession | None] = dict.fromkeys(ids)
    if ids:
        query = select(ChargingSession).where(any_of(db.session, ChargingSession.transaction_id, ids))
        found.update({session.transaction_id: session for session in db.session.scalars(query)})
    return found


@dataclass(frozen=True)
class Waiting:
    """Which starts of a batch `link_session` may link, found with one query for the batch: those a
    session names already (a redelivery), and those at a charger where a session waits for its
    transaction. The common start (no app session) then costs no session queries."""

    named: frozenset[int]
    chargers: frozenset[int]

    @classmethod
    def of(cls, transaction_ids: Iterable[int], charge_point_pks: Iterable[int]) -> Waiting:
        ids, pks = set(transaction_ids), set(charge_point_pks)
        if not ids:
            return cls(frozenset(), frozenset())
        conditions = [any_of(db.session, ChargingSession.transaction_id, ids)]
        if pks:
            conditions.append(
                and_(
                    ChargingSession.transaction_id.is_(None),
                    ChargingSession.state.in_([SessionState.REQUESTED, SessionState.ACCEPTED]),
                    any_of(db.session, ChargingSession.charge_point_id, pks),
                )
            )
        rows = db.session.execute(
            select(ChargingSession.transaction_id, ChargingSession.charge_point_id).where(or_(*conditions))
        ).all()
        return cls(
            frozenset(t for t, _ in rows if t is not None), frozenset(cp for t, cp in rows if t is None)
        )

    def may_link(self, transaction_id: int, charge_point_pk: int) -> bool:
        return transaction_id in self.named or charge_point_pk in self.chargers


def link_session(transaction_id: int) -> Linked | None:
    """Attach the transaction to the customer session waiting on its connector (same idTag), if any.

    Locks the transaction row first, as metering does: linking and a concurrent MeterValues then
    happen one after the other, so whichever runs second sees the other's work (otherwise each could
    miss the other and a prepaid session would never be stopped).
    """
    transaction = db.session.get(Transaction, transaction_id, with_for_update=True)
    if transaction is None:
        return None
    session = db.session.scalar(
        select(ChargingSession).where(ChargingSession.transaction_id == transaction_id)
    ) or db.session.scalar(
        select(ChargingSession)
        .where(
            ChargingSession.charge_point_id == transaction.charge_point_id,
            ChargingSession.connector_id == transaction.connector_id,
            ChargingSession.id_tag == transaction.id_tag,
            ChargingSession.transaction_id.is_(None),
            ChargingSession.state.in_([SessionState.REQUESTED, SessionState.ACCEPTED]),
        )
        .order_by(ChargingSession.id.desc())
        .with_for_update()
    )
    if session is None:
        return None
    claimed = session.transaction_id is None
    if claimed:
        session.transaction_id = transaction_id
        session.state = SessionState.CHARGING
        session.started_at = transaction.started_at
    stopped = transaction.state == TransactionState.STOPPED
    return Linked(session.id, session.user_id, transaction_id, stopped, claimed)


@dataclass(frozen=True)
class Stopped:
    transaction_id: int
    known: bool
    newly_stopped: bool
    energy_wh: int | None
    session: Linked | None


def stop(
    charge_point_pk: int | None,
    payload: dict[str, Any],
    notes: list[str] | None = None,
    locked: dict[int, Transaction] | None = None,
    sessions: dict[int, ChargingSession | None] | None = None,
) -> Stopped:
    """Record a StopTransaction. The first Stop wins; a repeated one changes nothing. A transaction the
    CSMS never allocated (unknown id, or -1) is reported as unknown and left alone.

    An answered Stop always stops: a meterStop no meter reads (beyond 10^16 Wh, negative) is
    replaced by the highest register reading known, and absurd samples are dropped, each with a
    reason in `notes`. `locked`: transactions the caller has locked and loaded already
    (`lock_and_load_transactions`); `sessions`: their customer sessions, read already
    (`sessions_of`)."""
    notes = [] if notes is None else notes
    transaction_id = bounds.int32(payload["transactionId"])
    transaction = None
    if locked is not None and transaction_id in locked:
        transaction = locked[transaction_id]
    elif transaction_id is not None:
        transaction = db.session.get(
            Transaction, transaction_id, with_for_update=True, populate_existing=True
        )
    if transaction is None or (
        charge_point_pk is not None and transaction.charge_point_id != charge_point_pk
    ):
        log.warning("StopTransaction for unknown transaction %s", payload["transactionId"])
        return Stopped(payload["transactionId"], False, False, None, None)
    stopped_at = parse_utc(payload["timestamp"])
    samples = metering.parse(payload.get("transactionData") or [], notes)
    metering.store(
        metering.sample_rows(transaction.charge_point_id, transaction.connector_id, transaction.id, samples)
    )
    meter_start = bounds.reading(transaction.meter_start_wh) or 0
    meter_stop = bounds.reading(payload["meterStop"])
    if meter_stop is None:
        in_data = metering.register_reading(samples)
        known = bounds.reading(transaction.meter_last_wh) or meter_start
        meter_stop = max(known, in_data[0] if in_data else 0)
        notes.append(
            f"meterStop {payload['meterStop']} out of range: used {meter_stop} Wh, the highest reading"
        )
    # The row is locked and was read under the lock: what it says is what the database holds.
    newly_stopped = transaction.state == TransactionState.STARTED
    if newly_stopped:
        transaction.state = TransactionState.STOPPED
        transaction.meter_stop_wh = meter_stop
        transaction.meter_last_wh = max(meter_stop, transaction.meter_last_wh or 0)
        transaction.energy_wh = max(meter_stop - meter_start, 0)
        transaction.stopped_at = stopped_at
        transaction.stop_reason = payload.get("reason", "Local")
        transaction.stop_id_tag = payload.get("idTag")
    if sessions is not None and transaction_id in sessions:
        session = sessions[transaction_id]
    else:
        session = db.session.scalar(
            select(ChargingSession).where(ChargingSession.transaction_id == transaction_id)
        )
    linked = None
    if session is not None:
        if session.state in (SessionState.CHARGING, SessionState.ACCEPTED, SessionState.REQUESTED):
            session.state = SessionState.STOPPING
        linked = Linked(session.id, session.user_id, transaction_id, True)
    return Stopped(transaction_id, True, newly_stopped, transaction.energy_wh, linked)


def request_remote_stop(session_id: int, charge_point_id: str, transaction_id: int, reason: str) -> bool:
    """Queue RemoteStopTransaction for the charger (once per session): the node holding it sends it."""
    return command_queue.request(
        f"session:{session_id}:remote-stop",
        charge_point_id,
        "RemoteStopTransaction",
        {"transactionId": transaction_id},
        reason,
    )


def refresh_progress(
    transactions: dict[int, str], power_w: dict[int, int] | None = None, margin_seconds: float = 0.0
) -> dict[int, metering.Progress]:
    """Update the live energy and cost of the sessions on these transactions (id → chargePointId);
    when a prepaid amount is used up, or will be within `margin_seconds` at the power drawn now,
    mark the session stopping and ask for RemoteStopTransaction (once): the stop must reach the
    charger before the budget is spent, not after."""
    progress = metering.update_sessions(sorted(transactions), power_w)
    for transaction_id, p in progress.items():
        near = p.seconds_to_budget is not None and p.seconds_to_budget <= margin_seconds
        if p.exhausted or near:
            session = db.session.get(ChargingSession, p.session_id)
            if session.state == SessionState.CHARGING:
                session.state = SessionState.STOPPING
            reason = (
                "prepaid amount used up"
                if p.exhausted
                else f"prepaid amount used up in {p.seconds_to_budget:.0f} s at the current power"
            )
            request_remote_stop(p.session_id, transactions[transaction_id], transaction_id, reason)
    return progress


SAMPLE_INTERVAL_KEY = "MeterValueSampleInterval"


def request_sample_interval(session_id: int, charge_point_id: str, seconds: int) -> bool:
    """Ask the charger to sample often enough to forecast a prepaid session's end (once per session)."""
    return command_queue.request(
        f"session:{session_id}:sample-interval",
        charge_point_id,
        "ChangeConfiguration",
        {"key": SAMPLE_INTERVAL_KEY, "value": str(seconds)},
        f"session {session_id}: meter values every {seconds} s to stop it before its budget",
    )


def restore_sample_interval(session_id: int, seconds: str) -> bool:
    """After a session whose sampling the CSMS quickened, give the charger its usual interval back
    (once), unless another app session on it is still going (its own end restores it)."""
    asked = db.session.scalar(
        select(QueuedCommand.id).where(QueuedCommand.dedup_key == f"session:{session_id}:sample-interval")
    )
    session = db.session.get(ChargingSession, session_id)
    if asked is None or session is None:
        return False
    busy = db.session.scalar(
        select(ChargingSession.id)
        .where(
            ChargingSession.charge_point_id == session.charge_point_id,
            ChargingSession.id != session_id,
            ChargingSession.state.in_(ACTIVE_SESSION_STATES),
        )
        .limit(1)
    )
    if busy is not None:
        return False
    return command_queue.request(
        f"session:{session_id}:sample-interval-restore",
        session.charge_point.charge_point_id,
        "ChangeConfiguration",
        {"key": SAMPLE_INTERVAL_KEY, "value": seconds},
        f"session {session_id} ended: meter values every {seconds} s again",
    )
