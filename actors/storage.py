"""The message log and the charger's own state: every exchange without a more specific concern."""

from __future__ import annotations

import dramatiq

from actors.exchanges import Exchange, Notifications
from csms.extensions import db
from csms.realtime import charger_room
from csms.services import charger_state, message_log


@dramatiq.actor(queue_name="ocpp_messages", max_retries=10, min_backoff=500, max_backoff=60_000)
def record_exchange(exchange: dict) -> None:
    """Store the frames of one exchange and apply what it says about the charger; idempotent."""
    notifications = Notifications()
    message_log.record(exchange)
    apply_charger_state(Exchange(exchange), notifications)
    db.session.commit()
    notifications.publish()


def apply_charger_state(exchange: Exchange, notifications: Notifications) -> None:
    """Last seen on every message; identity on boot; connector status when newer than stored."""
    cp = exchange.charge_point_id
    charger_state.touch(cp, exchange.at)
    if not exchange.answered:
        return
    if exchange.action == "BootNotification":
        charger_state.apply_boot(cp, exchange.request, exchange.at)
    elif exchange.action == "StatusNotification":
        status = exchange.request
        at = exchange.time_of(status.get("timestamp"))
        if charger_state.apply_status(cp, status, at):
            data = {
                "chargePointId": cp,
                "connectorId": status["connectorId"],
                "status": status["status"],
                "errorCode": status["errorCode"],
                "timestamp": at.isoformat(),
            }
            notifications.add("charger:status:changed", data, [charger_room(cp)])
