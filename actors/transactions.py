"""StartTransaction and StopTransaction: the transaction record, its customer session, and billing."""

from __future__ import annotations

import dramatiq
from flask import current_app

from actors.batch import run_batch
from actors.exchanges import Exchange, Notifications
from actors.storage import store_and_apply_charger_state
from csms.extensions import db
from csms.realtime import charger_room, customer_room
from csms.services import charger_state, charging, site_load, unplanned


@dramatiq.actor(queue_name="transactions", max_retries=20, min_backoff=500, max_backoff=120_000)
def process_transaction_messages(exchanges: list) -> None:
    """Apply a batch of Start/StopTransaction exchanges, in the order they were handed off; safe to
    run twice, concurrently, or out of order."""
    run_batch(process_transaction_messages, exchanges, apply_transactions)


def apply_transactions(views: list[Exchange], notifications: Notifications) -> None:
    from actors.billing import settle_session

    store_and_apply_charger_state(views, notifications)
    candidates = unplanned.Candidates.of(
        [
            (view.response["transactionId"], view.request["idTag"])
            for view in views
            if view.answered and view.action == "StartTransaction"
        ]
    )
    for view in views:
        session_id = None
        if view.answered and view.action == "StartTransaction":
            session_id = _start(view, notifications, candidates)
        elif view.answered and view.action == "StopTransaction":
            pk = charger_state.charge_point_pk(view.charge_point_id)
            stopped = charging.stop(pk, view.request, view.notes)
            session_id = stopped.session.session_id if stopped.session is not None else None
        if session_id is not None:
            notifications.send_after(settle_session, session_id)
    _reallocate_after(views, notifications)


def _reallocate_after(views: list[Exchange], notifications: Notifications) -> None:
    """A transaction that starts or stops at a limited site changes every share there."""
    from actors.load import reallocate_sites

    started = [v for v in views if v.answered and v.action in ("StartTransaction", "StopTransaction")]
    if not started:
        return
    pks = charger_state.charge_point_pks(view.charge_point_id for view in started)
    sites = site_load.station_of(set(pks.values()))
    for station_id in sorted(set(sites.values())):
        notifications.send_after(reallocate_sites, [{"station_id": station_id, "reason": "transaction"}])


def _start(view: Exchange, notifications: Notifications, candidates: unplanned.Candidates) -> int | None:
    """Close what the start supersedes, then link the transaction to its customer session, or to a
    new session of its tag's owner (`unplanned`); returns the session when it is already stopped
    (its Stop was processed first, and billing waited for this link)."""
    transaction_id = view.response["transactionId"]
    if transaction_id in candidates.superseding:
        _settled(notifications, unplanned.close_superseded(transaction_id))
    linked = charging.link_session(transaction_id)
    settled = []
    if linked is None and view.request["idTag"] in candidates.owned_tags:
        adoption = unplanned.adopt(
            transaction_id,
            view.charge_point_id,
            view.response["idTagInfo"]["status"],
            current_app.config["UNPLANNED_HOLD"],
        )
        linked, settled = adoption.linked, [adoption.settlement] if adoption.settlement else []
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
    db.session.flush()  # meter values may have been processed before this link
    charging.refresh_progress({transaction_id: view.charge_point_id})
    return None


def _settled(notifications: Notifications, settlements: list) -> None:
    from actors.billing import stopped_event

    for settlement in settlements:
        notifications.add("charging:stopped", stopped_event(settlement), [customer_room(settlement.user_id)])
