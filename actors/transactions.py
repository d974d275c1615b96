"""StartTransaction and StopTransaction: the transaction record, its customer session, and billing."""

from __future__ import annotations

import dramatiq

from actors.exchanges import Exchange, Notifications
from actors.storage import apply_charger_state
from csms.extensions import db
from csms.realtime import charger_room, customer_room
from csms.services import charger_state, charging, message_log


@dramatiq.actor(queue_name="transactions", max_retries=20, min_backoff=500, max_backoff=120_000)
def process_transaction_message(exchange: dict) -> None:
    """Apply one Start/StopTransaction exchange; safe to run twice, concurrently, or out of order."""
    from actors.billing import settle_session

    message_log.record(exchange)
    view = Exchange(exchange)
    notifications = Notifications()
    apply_charger_state(view, notifications)
    to_settle = None
    if view.answered and view.action == "StartTransaction":
        transaction_id = view.response["transactionId"]
        linked = charging.link_session(transaction_id)
        if linked is not None:
            payload = {
                "sessionId": linked.session_id,
                "transactionId": transaction_id,
                "chargePointId": view.charge_point_id,
                "connectorId": view.request["connectorId"],
            }
            notifications.add(
                "charging:started",
                payload,
                [customer_room(linked.user_id), charger_room(view.charge_point_id)],
            )
            if linked.stopped:  # its Stop was processed first: billing waited for this link
                to_settle = linked.session_id
            else:  # meter values may have been processed before this link
                db.session.flush()
                charging.refresh_progress(transaction_id, view.charge_point_id)
    elif view.answered and view.action == "StopTransaction":
        stopped = charging.stop(charger_state.charge_point_pk(view.charge_point_id), view.request)
        if stopped.session is not None:
            to_settle = stopped.session.session_id
    db.session.commit()
    notifications.publish()
    if to_settle is not None:
        settle_session.send(to_settle)
