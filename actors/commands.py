"""The audit of CSMS-initiated calls: who asked, what was sent, the answer and its latency."""

import logging

import dramatiq

from actors import priorities
from actors.batch import run_batch
from actors.exchanges import Exchange, Notifications
from csms.realtime import charger_room
from csms.services import call_outcomes, commands, events, local_lists, message_log

log = logging.getLogger(__name__)


@dramatiq.actor(
    queue_name="commands",
    max_retries=10,
    min_backoff=500,
    max_backoff=60_000,
    priority=priorities.BOOKKEEPING,
)
def record_commands(exchanges: list) -> None:
    """Store each call's frames and its audit row once, and tell operators how it went."""
    run_batch(record_commands, exchanges, apply_commands)


def apply_commands(views: list[Exchange], notifications: Notifications) -> None:
    message_log.record(view.raw for view in views)
    for view in views:
        command = view.command or {}
        if commands.record_audit(view.charge_point_id, view.first, command):
            call_outcomes.apply(view.charge_point_id, view.action, view.request, command, view.at)
            data = {
                "chargePointId": view.charge_point_id,
                "action": command.get("action"),
                "outcome": command.get("outcome"),
                "response": command.get("response"),
                "errorCode": command.get("error_code"),
                "latencyMs": command.get("latency_ms"),
                "requestedBy": command.get("requested_by"),
            }
            notifications.add("command:result", data, [charger_room(view.charge_point_id)])
            if view.action in local_lists.ACTIONS:
                local_lists.on_answer(
                    view.charge_point_id, view.action, view.request, command, view.first["unique_id"]
                )
            events.emit("command.result", data, key=view.first["event_id"])
            log.info(
                "%s: %s by user %s: %s in %s ms",
                view.charge_point_id,
                data["action"],
                data["requestedBy"],
                data["errorCode"] or data["outcome"],
                data["latencyMs"],
                extra={"chargePointId": view.charge_point_id, "userId": data["requestedBy"]},
            )
