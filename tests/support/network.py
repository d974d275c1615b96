"""For the network-operations tests: an HTTP client for the REST API, and a charger (the `ocpp`
library's) that keeps a local authorization list the way OCPP 1.6 §4 describes."""

from __future__ import annotations

from ocpp.routing import on
from ocpp.v16 import call_result
from ocpp.v16.enums import UpdateStatus, UpdateType

from tests.support.chargers import LibraryCharger, _TestChargePoint

PROFILES = "Core,FirmwareManagement,LocalAuthListManagement,Reservation,SmartCharging,RemoteTrigger"


class _ListKeepingChargePoint(_TestChargePoint):
    """Holds a local list and its version; refuses a Differential update that does not move the
    version forward (VersionMismatch, §6.47). `updates` records every SendLocalList as received."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.configuration["SupportedFeatureProfiles"] = PROFILES
        self.list_version = 0
        self.local_list: dict[str, dict] = {}
        self.updates: list[tuple[int, str, list]] = []
        self.version_asked = 0

    @on("GetLocalListVersion")
    async def on_get_local_list_version(self, **kwargs):
        self.version_asked += 1
        return call_result.GetLocalListVersion(list_version=self.list_version)

    @on("SendLocalList")
    async def on_send_local_list(self, list_version, update_type, local_authorization_list=None, **kwargs):
        entries = local_authorization_list or []
        self.updates.append((list_version, update_type, entries))
        if update_type == UpdateType.differential and list_version <= self.list_version:
            return call_result.SendLocalList(status=UpdateStatus.version_mismatch)
        if update_type == UpdateType.full:
            self.local_list = {}
        for entry in entries:
            if entry.get("id_tag_info") is None:
                self.local_list.pop(entry["id_tag"], None)
            else:
                self.local_list[entry["id_tag"]] = entry["id_tag_info"]
        self.list_version = list_version
        return call_result.SendLocalList(status=UpdateStatus.accepted)


class ListKeepingCharger(LibraryCharger):
    charge_point_class = _ListKeepingChargePoint


class _CoreOnlyChargePoint(_TestChargePoint):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.configuration["SupportedFeatureProfiles"] = "Core,RemoteTrigger"


class CoreOnlyCharger(LibraryCharger):
    """A charger without the LocalAuthListManagement profile."""

    charge_point_class = _CoreOnlyChargePoint
