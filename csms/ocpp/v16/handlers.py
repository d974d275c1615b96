"""Immediate answers to the ten charger-initiated OCPP 1.6 actions.

Each `on_<action>` gets the session and the (already schema-valid) payload and returns the
`ocpp.v16.call_result` dataclass to answer with. They only read, except StartTransaction, which must
allocate the transactionId before answering; everything else (storage, metering, billing) happens in
the actors the session hands the exchange to.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ocpp.v16 import call_result
from ocpp.v16.enums import DataTransferStatus, RegistrationStatus

from csms.services import authorization, prepaid, transactions
from csms.services.bounds import NUL, NUL_REPLACEMENT
from csms.services.chargers import registration_status
from csms.services.clock import parse_utc, utc_now_iso_ms

if TYPE_CHECKING:
    from csms.ocpp.session import OcppSession


def on_boot_notification(session: OcppSession, payload: dict[str, Any]) -> call_result.BootNotification:
    # §4.2: Pending/Rejected tell the charger to retry after `interval`. An accepted charger's status
    # comes from the handshake (no database read in a reboot storm); one that is not accepted yet is
    # read fresh, so an operator's acceptance takes effect at its next boot.
    status = session.registration_status
    if status != RegistrationStatus.accepted:
        status = registration_status(session.charge_point_pk) or RegistrationStatus.rejected
    session.registration_status = status
    config = session.gateway.config
    interval = config["HEARTBEAT_INTERVAL"] if status == "Accepted" else config["PENDING_INTERVAL"]
    return call_result.BootNotification(current_time=utc_now_iso_ms(), interval=interval, status=status)


def on_heartbeat(session: OcppSession, payload: dict[str, Any]) -> call_result.Heartbeat:
    return call_result.Heartbeat(current_time=utc_now_iso_ms())


def on_authorize(session: OcppSession, payload: dict[str, Any]) -> call_result.Authorize:
    gateway = session.gateway
    info = authorization.authorize(payload["idTag"], session.charge_point_pk, gateway.id_tags, starting=False)
    if info.status == "Accepted":  # the prepaid rule reads the owner's standing only when it matters
        standing = gateway.standings.standing(payload["idTag"])
        info = prepaid.below_minimum(info, standing, gateway.config["MIN_BALANCE"])
    return call_result.Authorize(id_tag_info=info.as_ocpp())


def on_start_transaction(session: OcppSession, payload: dict[str, Any]) -> call_result.StartTransaction:
    # §5.11/§6.45: the charger may have started already (offline authorisation); it always gets a
    # transactionId, and idTagInfo tells it whether to go on.
    id_tag = payload["idTag"].replace(NUL, NUL_REPLACEMENT)  # as the workers store it (unknown: Invalid)
    start = transactions.Start(
        session.charge_point_pk,
        payload["connectorId"],
        id_tag,
        parse_utc(payload["timestamp"]),
        payload["meterStart"],
        payload.get("reservationId"),
    )
    transaction_id = session.gateway.transaction_ids.submit(start)
    info = authorization.authorize(
        id_tag, session.charge_point_pk, session.gateway.id_tags, starting=True
    ).as_ocpp()
    # §7.2 ConcurrentTx, on this charger: the same idTag's earlier transaction on this connector is
    # still open (its transactions elsewhere: csms.services.authorization).
    info["status"] = session.open_transactions.started(
        payload["connectorId"], transaction_id, id_tag, info["status"]
    )
    return call_result.StartTransaction(transaction_id=transaction_id, id_tag_info=info)


def on_stop_transaction(session: OcppSession, payload: dict[str, Any]) -> call_result.StopTransaction:
    # §6.49: always answered, whatever the transaction: unknown, already stopped, or -1.
    session.open_transactions.stopped(payload["transactionId"])
    id_tag = payload.get("idTag")
    info = session.gateway.id_tags.info(id_tag).as_ocpp() if id_tag else None
    return call_result.StopTransaction(id_tag_info=info)


def on_meter_values(session: OcppSession, payload: dict[str, Any]) -> call_result.MeterValues:
    return call_result.MeterValues()


def on_status_notification(session: OcppSession, payload: dict[str, Any]) -> call_result.StatusNotification:
    return call_result.StatusNotification()


def on_data_transfer(session: OcppSession, payload: dict[str, Any]) -> call_result.DataTransfer:
    # Vendor data is kept in the message log for operators; no vendor extension is interpreted.
    return call_result.DataTransfer(status=DataTransferStatus.accepted)


def on_diagnostics_status_notification(
    session: OcppSession, payload: dict[str, Any]
) -> call_result.DiagnosticsStatusNotification:
    return call_result.DiagnosticsStatusNotification()


def on_firmware_status_notification(
    session: OcppSession, payload: dict[str, Any]
) -> call_result.FirmwareStatusNotification:
    return call_result.FirmwareStatusNotification()


HANDLERS = {
    "Authorize": on_authorize,
    "BootNotification": on_boot_notification,
    "DataTransfer": on_data_transfer,
    "DiagnosticsStatusNotification": on_diagnostics_status_notification,
    "FirmwareStatusNotification": on_firmware_status_notification,
    "Heartbeat": on_heartbeat,
    "MeterValues": on_meter_values,
    "StartTransaction": on_start_transaction,
    "StatusNotification": on_status_notification,
    "StopTransaction": on_stop_transaction,
}
