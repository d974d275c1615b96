"""An `ocpp` library charge point that also answers the network-operations calls (reservations,
firmware, diagnostics, maintenance) the way a real charger does, and remembers what it was asked,
so tests can play its side of each story: the notifications, transactions and file transfers."""

from __future__ import annotations

from typing import Any

from ocpp.routing import on
from ocpp.v16 import call, call_result
from ocpp.v16.enums import (
    AvailabilityStatus,
    CancelReservationStatus,
    ClearCacheStatus,
    TriggerMessageStatus,
    UnlockStatus,
)

from tests.support.chargers import LibraryCharger, _TestChargePoint


class _NetworkChargePoint(_TestChargePoint):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.asked: dict[str, list[dict[str, Any]]] = {}
        self.reserve_answer = "Accepted"
        self.charging: set[int] = set()  # connectors with a transaction: ChangeAvailability is Scheduled

    def _remember(self, action: str, **payload: Any) -> None:
        self.asked.setdefault(action, []).append(payload)

    @on("ReserveNow")
    async def on_reserve_now(self, connector_id, expiry_date, id_tag, reservation_id, **kwargs):
        self._remember("ReserveNow", connector_id=connector_id, id_tag=id_tag, reservation_id=reservation_id)
        return call_result.ReserveNow(status=self.reserve_answer)

    @on("CancelReservation")
    async def on_cancel_reservation(self, reservation_id, **kwargs):
        self._remember("CancelReservation", reservation_id=reservation_id)
        return call_result.CancelReservation(status=CancelReservationStatus.accepted)

    @on("UpdateFirmware")
    async def on_update_firmware(self, location, retrieve_date, **kwargs):
        self._remember("UpdateFirmware", location=location, retrieve_date=retrieve_date, **kwargs)
        return call_result.UpdateFirmware()

    @on("GetDiagnostics")
    async def on_get_diagnostics(self, location, **kwargs):
        self._remember("GetDiagnostics", location=location, **kwargs)
        return call_result.GetDiagnostics(file_name="diagnostics.log")

    @on("TriggerMessage")
    async def on_trigger_message(self, requested_message, **kwargs):
        self._remember("TriggerMessage", requested_message=requested_message, **kwargs)
        return call_result.TriggerMessage(status=TriggerMessageStatus.accepted)

    @on("UnlockConnector")
    async def on_unlock_connector(self, connector_id, **kwargs):
        self._remember("UnlockConnector", connector_id=connector_id)
        return call_result.UnlockConnector(status=UnlockStatus.unlocked)

    @on("ClearCache")
    async def on_clear_cache(self, **kwargs):
        self._remember("ClearCache")
        return call_result.ClearCache(status=ClearCacheStatus.accepted)

    @on("ChangeAvailability")
    async def on_change_availability(self, connector_id, type, **kwargs):
        self._remember("ChangeAvailability", connector_id=connector_id, type=type)
        busy = connector_id in self.charging or (connector_id == 0 and self.charging)
        return call_result.ChangeAvailability(
            status=AvailabilityStatus.scheduled if busy else AvailabilityStatus.accepted
        )


class NetworkCharger(LibraryCharger):
    charge_point_class = _NetworkChargePoint

    def asked(self, action: str) -> list[dict[str, Any]]:
        return self.charge_point.asked.get(action, [])

    def send(self, request: Any) -> Any:
        """Send a charger-initiated call (an `ocpp.v16.call` dataclass) and return its answer."""
        return self.run(self.charge_point.call(request))

    def status(self, connector_id: int, status: str, timestamp: str) -> None:
        self.send(
            call.StatusNotification(
                connector_id=connector_id, error_code="NoError", status=status, timestamp=timestamp
            )
        )
