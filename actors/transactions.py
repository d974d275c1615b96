"""StartTransaction and StopTransaction: the transaction record, its customer session, and billing."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import dramatiq
from flask import current_app

from actors import priorities
from actors.batch import run_batch
from actors.exchanges import Exchange, Notifications
from actors.storage import store_and_apply_charger_state
from csms.extensions import db
from csms.models import ChargingSession, Transaction
from csms.realtime import charger_room, customer_room
from csms.services import bills, bounds, charger_state, charging, events, reservations, site_load, unplanned

log = logging.getLogger(__name__)


@dramatiq.actor(
    queue_name="transactions",
    max_retries=20,
    min_backoff=500,
    max_backoff=120_000,
    priority=priorities.METERING,
)
def process_transaction_messages(exchanges: list) -> None:
    """Apply a batch of Start/StopTransaction exchanges, in the order they were handed off; safe to
    run twice, concurrently, or out of order."""
    run_batch(process_transaction_messages, exchanges, apply_transactions)


def apply_transactions(views: list[Exchange], notifications: Notifications) -> None:
    from actors.billing import bill_transactions, settle_session

    store_and_apply_charger_state(views, notifications)
    batch = _Batch.of(views)
    to_bill = []
    for view in views:
        session_id = None
        if view.answered and view.action == "StartTransaction":
            session_id = _start(view, notifications, batch)
        elif view.answered and view.action == "StopTransaction":
            pk = batch.pks.get(view.charge_point_id)
            stopped = charging.stop(pk, view.request, view.notes, batch.transactions, batch.sessions)
            session_id = stopped.session.session_id if stopped.session is not None else None
            if stopped.known and session_id is None:
                to_bill.append(stopped.transaction_id)
            if stopped.known and stopped.newly_stopped:
                _emit_stopped(view, stopped)
        if session_id is not None:
            notifications.send_after(settle_session, session_id)
    if to_bill:
        notifications.send_after(bill_transactions, to_bill)
    _reallocate_after(batch, notifications)


@dataclass(frozen=True)
class _Batch:
    """What the batch's exchanges need from the database, read with a few queries for the whole
    batch (its transactions locked and loaded, its chargers' keys, tariffs, reservations, waiting
    sessions): a start costs a query or two more only where a session or a reservation waits."""

    transactions: dict[int, Transaction]  # the batch's, locked
    sessions: dict[int, ChargingSession | None]  # the stops' sessions (but of transactions started here)
    pks: dict[str, int]  # chargePointId → charger key
    candidates: unplanned.Candidates
    waiting: charging.Waiting
    tariffs: bills.Tariffs
    reserved: set[int]  # chargers with an open reservation

    @classmethod
    def of(cls, views: list[Exchange]) -> _Batch:
        transactions = charging.lock_and_load_transactions(_transaction_ids(views))
        starts = [view for view in views if view.answered and view.action == "StartTransaction"]
        stops = [view for view in views if view.answered and view.action == "StopTransaction"]
        changed = starts + stops
        pks = charger_state.charge_point_pks(view.charge_point_id for view in changed) if changed else {}
        started_at = {pks[v.charge_point_id] for v in starts if v.charge_point_id in pks}
        started = {view.response["transactionId"] for view in starts}
        stopping = {bounds.int32(view.request["transactionId"]) for view in stops} - started - {None}
        return cls(
            transactions,
            charging.sessions_of(stopping & set(transactions)),
            pks,
            unplanned.Candidates.of(
                [(view.response["transactionId"], view.request["idTag"]) for view in starts]
            ),
            charging.Waiting.of([view.response["transactionId"] for view in starts], started_at),
            bills.Tariffs(started_at),
            reservations.chargers_with_open(started_at),
        )


def _transaction_ids(views: list[Exchange]):
    for view in views:
        if view.answered and view.action == "StartTransaction":
            yield view.response["transactionId"]
        elif view.answered and view.action == "StopTransaction":
            yield bounds.int32(view.request["transactionId"])


def _reallocate_after(batch: _Batch, notifications: Notifications) -> None:
    """A transaction that starts or stops at a limited site changes every share there."""
    from actors.load import reallocate_sites

    if not batch.pks:  # no transaction starts or stops here
        return
    sites = site_load.station_of(set(batch.pks.values()))
    for station_id in sorted(set(sites.values())):
        notifications.send_after(reallocate_sites, [{"station_id": station_id, "reason": "transaction"}])


def _start(view: Exchange, notifications: Notifications, batch: _Batch) -> int | None:
    """Close what the start supersedes, then link the transaction to its customer session, or to a
    new session of its tag's owner (`unplanned`); returns the session when it is already stopped
    (its Stop was processed first, and billing waited for this link)."""
    candidates = batch.candidates
    transaction_id = view.response["transactionId"]
    pk = batch.pks.get(view.charge_point_id)
    if pk in batch.reserved:
        _use_reservation(view, pk, transaction_id)
    if transaction_id in candidates.superseding:
        _settled(notifications, unplanned.close_superseded(transaction_id))
    may_link = batch.waiting.may_link(transaction_id, pk)
    linked = charging.link_session(transaction_id) if may_link else None
    transaction = batch.transactions.get(transaction_id)
    # the tariff as it is now prices the whole transaction
    bills.snapshot(transaction, batch.tariffs, may_have_session=may_link)
    settled = []
    if linked is None and view.request["idTag"] in candidates.owned_tags:
        adoption = unplanned.adopt(
            transaction_id,
            view.charge_point_id,
            view.response["idTagInfo"]["status"],
            current_app.config["UNPLANNED_HOLD"],
        )
        linked, settled = adoption.linked, [adoption.settlement] if adoption.settlement else []
    _emit_started(view, linked)
    if linked is None:
        return None
    payload = {
        "sessionId": linked.session_id,
        "transactionId": transaction_id,
        "chargePointId": view.charge_point_id,
        "connectorId": view.request["connectorId"],
    }
    notifications.add(
        "charging:started", payload, [customer_room(linked.user_id), charger_room(view.charge_point_id)]
    )
    _settled(notifications, settled)  # already over: billed as it was adopted
    if linked.stopped:
        return linked.session_id
    if linked.claimed:  # an app session's budget: sample often enough to stop before it is spent
        charging.request_sample_interval(
            linked.session_id, view.charge_point_id, current_app.config["SESSION_SAMPLE_INTERVAL"]
        )
    db.session.flush()  # meter values may have been processed before this link
    charging.refresh_progress(
        {transaction_id: view.charge_point_id}, margin_seconds=current_app.config["BUDGET_MARGIN_SECONDS"]
    )
    return None


def _use_reservation(view: Exchange, pk: int, transaction_id: int) -> None:
    """The reservation this start takes, if any (csms.services.reservations.use)."""
    reservation_id = view.request.get("reservationId")
    in_range = bounds.int32(view.request["connectorId"]) is not None and (
        reservation_id is None or bounds.int32(reservation_id) is not None
    )
    if not in_range:
        return
    reservations.use(
        pk,
        view.request["connectorId"],
        view.request["idTag"],
        reservation_id,
        transaction_id,
        view.response["idTagInfo"]["status"],
        view.time_of(view.request.get("timestamp")),
    )


def _emit_started(view: Exchange, linked: charging.Linked | None) -> None:
    """`notification.charging.started` for every transaction the CSMS gave an id (keyed by it, so
    a redelivered StartTransaction announces nothing new)."""
    request = view.request
    transaction_id = view.response["transactionId"]
    data = {
        "transactionId": transaction_id,
        "chargePointId": view.charge_point_id,
        "connectorId": request["connectorId"],
        "idTag": request["idTag"],
        "idTagStatus": view.response["idTagInfo"]["status"],
        "meterStartWh": request["meterStart"],
        "timestamp": view.time_of(request.get("timestamp")).isoformat(),
        "sessionId": linked.session_id if linked else None,
        "userId": linked.user_id if linked else None,
    }
    events.emit("notification.charging.started", data, key=str(transaction_id))
    log.info(
        "%s: transaction %s started on connector %s (session %s)",
        view.charge_point_id,
        transaction_id,
        request["connectorId"],
        data["sessionId"],
        extra={
            "chargePointId": view.charge_point_id,
            "transactionId": transaction_id,
            "userId": data["userId"],
        },
    )


def _emit_stopped(view: Exchange, stopped: charging.Stopped) -> None:
    request = view.request
    data = {
        "transactionId": stopped.transaction_id,
        "chargePointId": view.charge_point_id,
        "meterStopWh": request["meterStop"],
        "energyWh": stopped.energy_wh,
        "reason": request.get("reason", "Local"),
        "timestamp": view.time_of(request.get("timestamp")).isoformat(),
        "sessionId": stopped.session.session_id if stopped.session else None,
        "userId": stopped.session.user_id if stopped.session else None,
    }
    events.emit("notification.charging.stopped", data, key=str(stopped.transaction_id))
    log.info(
        "%s: transaction %s stopped (%s), %s Wh (session %s)",
        view.charge_point_id,
        stopped.transaction_id,
        data["reason"],
        stopped.energy_wh,
        data["sessionId"],
        extra={
            "chargePointId": view.charge_point_id,
            "transactionId": stopped.transaction_id,
            "userId": data["userId"],
        },
    )


def _settled(notifications: Notifications, settlements: list) -> None:
    from actors.billing import stopped_event

    for settlement in settlements:
        notifications.add(
            "charging:stopped",
            stopped_event(settlement),
            [customer_room(settlement.user_id)],
            charger_id=settlement.charge_point_pk,
        )
