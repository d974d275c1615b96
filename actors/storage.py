"""The message log and the charger's own state: every exchange without a more specific concern."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import dramatiq

from actors import priorities
from actors.batch import run_batch
from actors.exchanges import Exchange, Notifications
from csms.pipeline import last_seen
from csms.realtime import charger_room
from csms.services import (
    bounds,
    charger_state,
    diagnostics,
    events,
    firmware,
    local_lists,
    maintenance,
    message_log,
    site_load,
)

log = logging.getLogger(__name__)


@dramatiq.actor(
    queue_name="ocpp_messages",
    max_retries=10,
    min_backoff=500,
    max_backoff=60_000,
    priority=priorities.CHARGER_STATE,
)
def record_exchanges(exchanges: list) -> None:
    """Store the frames of a batch of exchanges and apply what they say about their chargers;
    idempotent."""
    run_batch(record_exchanges, exchanges, store_and_apply_charger_state)


def store_and_apply_charger_state(views: list[Exchange], notifications: Notifications) -> None:
    """The part every actor does for every exchange: its frames logged, the charger's state, and
    its last seen noted."""
    message_log.record(view.raw for view in views)
    apply_charger_state(views, notifications)
    last_seen.note((view.charge_point_id, view.at) for view in views)  # raised apart from the batch


def apply_charger_state(views: list[Exchange], notifications: Notifications) -> None:
    """Identity on boot; connector status when newer than stored."""
    statuses = _Statuses.of(views)
    booted = []
    for view in _connector_order(views, statuses):
        if not view.answered:
            continue
        if view.action == "BootNotification":
            if (view.response or {}).get("status") == "Accepted":
                booted.append(view.charge_point_id)
            if charger_state.apply_boot(view.charge_point_id, view.request, view.at):
                local_lists.after_boot(view.charge_point_id, view.first["unique_id"])
            firmware.apply_boot(view.charge_point_id, view.request.get("firmwareVersion"))
            log.info(
                "%s booted: %s %s, firmware %s; answered %s",
                view.charge_point_id,
                view.request.get("chargePointVendor"),
                view.request.get("chargePointModel"),
                view.request.get("firmwareVersion"),
                view.response.get("status"),
                extra={"chargePointId": view.charge_point_id, "event": "boot"},
            )
        elif view.action == "StatusNotification":
            apply_status(view, notifications, statuses)
        elif view.action == "FirmwareStatusNotification":
            firmware.apply_status(view.charge_point_id, view.request["status"], view.at)
        elif view.action == "DiagnosticsStatusNotification":
            diagnostics.apply_status(view.charge_point_id, view.request["status"], view.at)
    _after_boot(booted, notifications)


def _after_boot(booted: list[str], notifications: Notifications) -> None:
    """A charger of a limited site that boots gets its TxDefaultProfile, and the site's shares are
    computed again (csms.services.load_management)."""
    from actors.load import reallocate_sites

    if not booted:
        return
    pks = charger_state.charge_point_pks(booted)
    by_site: dict[int, list[int]] = {}
    for pk, station_id in sorted(site_load.station_of(set(pks.values())).items()):
        by_site.setdefault(station_id, []).append(pk)
    for station_id, members in by_site.items():
        trigger = {"station_id": station_id, "reason": "charger booted", "booted": members}
        notifications.send_after(reallocate_sites, [trigger])


def _connector_order(views: list[Exchange], statuses: _Statuses) -> list[Exchange]:
    """The batch with its StatusNotifications in (charger, connector) order, each connector's in
    the order they came, the rest where it was. Two batches updating the same connectors lock
    them in one order, so they wait for each other instead of deadlocking (seen in the
    smart-charging bench, the loser retried seconds later); a status applies only if newer than
    the stored one, so the order changes no outcome."""
    positions = [i for i, view in enumerate(views) if view.action == "StatusNotification"]
    ordered = sorted(
        (views[i] for i in positions),
        key=lambda v: (statuses.pks.get(v.charge_point_id, -1), str(v.request.get("connectorId"))),
    )
    result = list(views)
    for i, view in zip(positions, ordered, strict=True):
        result[i] = view
    return result


@dataclass(frozen=True)
class _Statuses:
    """What the batch's StatusNotifications need, read and written once for the batch: their
    chargers' keys, their connectors (made where missing), and which chargers have availability
    changes scheduled."""

    pks: dict[str, int]
    scheduled: set[int]

    @classmethod
    def of(cls, views: list[Exchange]) -> _Statuses:
        statuses = [
            view
            for view in views
            if view.answered
            and view.action == "StatusNotification"
            and bounds.int32(view.request["connectorId"]) is not None
        ]
        if not statuses:
            return cls({}, set())
        pks = charger_state.charge_point_pks(view.charge_point_id for view in statuses)
        charger_state.ensure_connectors(
            (pks[v.charge_point_id], v.request["connectorId"], v.request["status"])
            for v in statuses
            if v.charge_point_id in pks
        )
        return cls(pks, maintenance.with_scheduled_changes(pks.values()))


def apply_status(view: Exchange, notifications: Notifications, statuses: _Statuses) -> None:
    cp = view.charge_point_id
    status = view.request
    if bounds.int32(status["connectorId"]) is None:
        view.notes.append(f"connectorId {status['connectorId']} out of range: status not stored")
        return
    pk = statuses.pks.get(cp)
    if pk is None:
        return
    at = view.time_of(status.get("timestamp"))
    if pk in statuses.scheduled:
        maintenance.apply_status(pk, status["connectorId"], status["status"])  # a scheduled availability
    if charger_state.apply_status(pk, status, at):
        data = {
            "chargePointId": cp,
            "connectorId": status["connectorId"],
            "status": status["status"],
            "errorCode": status["errorCode"],
            "timestamp": at.isoformat(),
        }
        notifications.add("charger:status:changed", data, [charger_room(cp)])
        key = f"{cp}:{status['connectorId']}:{data['timestamp']}:{status['status']}:{status['errorCode']}"
        events.emit("notification.charger.status.changed", {**data, "info": status.get("info")}, key=key)
        if status["status"] == "Faulted" or status["errorCode"] != "NoError":
            notifications.add("error:occurred", connector_fault(cp, status, at), [charger_room(cp)])


def connector_fault(charge_point_id: str, status: dict, at: datetime) -> dict:
    """The `error:occurred` event of a StatusNotification reporting a fault (status Faulted, or an
    errorCode other than NoError, which OCPP 1.6 allows with any status)."""
    return {
        "source": "charger",
        "chargePointId": charge_point_id,
        "connectorId": status["connectorId"],
        "status": status["status"],
        "errorCode": status["errorCode"],
        "info": status.get("info"),
        "vendorId": status.get("vendorId"),
        "vendorErrorCode": status.get("vendorErrorCode"),
        "timestamp": at.isoformat(),
    }
