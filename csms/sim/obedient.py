"""Chargers that do what the CSMS asks: the living demo behind `csms-sim --obey`.

Each boots, reports its connectors Available and sends Heartbeats. RemoteStartTransaction starts a
transaction for the given idTag (Preparing, StartTransaction, Charging, then a rising register and
power every `MeterValueSampleInterval` seconds); RemoteStopTransaction stops it (StopTransaction,
Finishing, Available). Every other CSMS-initiated 1.6 action gets a plausible, schema-valid answer
and, where a real charger would follow up, the follow-up: TriggerMessage sends the message asked
for, ChangeAvailability and ReserveNow change the connector's status (a reservation ends at its
expiry; a reserved connector starts only for its idTag), GetDiagnostics uploads a log by HTTP PUT to
the location given, UpdateFirmware downloads the image, reports Downloading → Downloaded → Installing
→ Installed and reboots with the new version, Reset reboots.

Smart charging (OCPP 1.6 §3.13): SetChargingProfile installs a profile (or is Rejected when the
charger is made to refuse them, `rejects_profiles`), ClearChargingProfile removes them,
GetCompositeSchedule answers with what the installed profiles allow, and the power and current a
charging connector reports follow that limit (csms.services.charging_schedules), never more than
the charger's `max_current_a` nor what the car itself takes (`car_current_a`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import logging
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from csms.services import charging_schedules
from csms.services.clock import parse_utc
from csms.sim.charger import now_iso

log = logging.getLogger("csms.sim")

READ_ONLY = {"NumberOfConnectors", "ChargePointModel"}


@dataclass
class Connector:
    number: int
    status: str = "Available"
    transaction_id: int | None = None
    id_tag: str | None = None
    reserved_for: int | None = None  # a reservation id
    reserved_tag: str | None = None  # and the idTag it is held for
    started_at: datetime | None = None


@dataclass
class ObedientCharger:
    charge_point_id: str
    key: str
    url: str
    connectors: int = 2
    configuration: dict[str, str] = field(default_factory=dict)
    register_wh: int = 0
    local_list_version: int = 0
    max_current_a: float = 16.0  # per phase: 11 kW on three phases
    phases: int = 3
    car_current_a: float | None = None  # what the car takes at most (None: whatever it may)
    rejects_profiles: bool = False

    def __post_init__(self) -> None:
        self.sockets: list[Connector] = [Connector(n) for n in range(1, self.connectors + 1)]
        self.ids = itertools.count(1)
        self.pending: dict[str, tuple[asyncio.Future, Callable[[dict], None] | None]] = {}
        self.tasks: set[asyncio.Task] = set()
        self.ws: ClientConnection | None = None
        self.firmware_version = "1.0"
        self.profiles: list[tuple[int, dict[str, Any]]] = []  # (connectorId, csChargingProfiles)
        self.configuration = {
            "HeartbeatInterval": "60",
            "MeterValueSampleInterval": "5",
            "NumberOfConnectors": str(self.connectors),
            "ChargePointModel": "Sim-Obedient",
            "AuthorizeRemoteTxRequests": "false",
            **self.configuration,
        }

    # --- life ----------------------------------------------------------------------------------

    async def run(self, duration: float | None = None) -> None:
        """Connect and live for `duration` seconds (None: until cancelled), connecting again after a
        Reset or a lost connection."""
        loop = asyncio.get_running_loop()
        deadline = None if duration is None else loop.time() + duration
        while deadline is None or loop.time() < deadline:
            remaining = None if deadline is None else deadline - loop.time()
            try:
                await asyncio.wait_for(self._connected_life(), remaining)
            except TimeoutError:
                return
            except (ConnectionClosed, OSError) as exc:
                log.info("%s: connection lost (%s)", self.charge_point_id, exc)
            await asyncio.sleep(1)

    async def _connected_life(self) -> None:
        """One connection: boot, report the connectors, send Heartbeats until the connection ends."""
        token = base64.b64encode(f"{self.charge_point_id}:{self.key}".encode()).decode()
        self.ws = await connect(
            f"{self.url.rstrip('/')}/ocpp/{self.charge_point_id}",
            subprotocols=["ocpp1.6"],
            additional_headers={"Authorization": f"Basic {token}"},
            open_timeout=30,
        )
        reader = asyncio.create_task(self._read())
        heartbeats = asyncio.create_task(self._heartbeats())
        try:
            await asyncio.wait({reader, heartbeats}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reader, heartbeats, *self.tasks):
                task.cancel()
            with contextlib.suppress(Exception):
                await self.ws.close()

    async def _heartbeats(self) -> None:
        await self._boot()
        for connector in self.sockets:
            await self._status(connector, connector.status)
        while True:
            await asyncio.sleep(int(self.configuration["HeartbeatInterval"]))
            await self.call("Heartbeat", {})

    async def _boot(self) -> None:
        while True:
            answer = await self.call(
                "BootNotification",
                {
                    "chargePointVendor": "csms-sim",
                    "chargePointModel": "Sim-Obedient",
                    "firmwareVersion": self.firmware_version,
                },
            )
            if answer.get("status") == "Accepted":
                if answer.get("interval"):
                    self.configuration["HeartbeatInterval"] = str(answer["interval"])
                return
            await asyncio.sleep(max(int(answer.get("interval") or 10), 1))

    # --- talking to the CSMS ---------------------------------------------------------------------

    async def call(
        self,
        action: str,
        payload: dict[str, Any],
        timeout: float = 30,
        on_answer: Callable[[dict], None] | None = None,
    ) -> dict[str, Any]:
        """Send a call and wait for its answer ({} for a CALLERROR). `on_answer` applies a
        CALLRESULT as it is read, before the frame behind it (see `_resolve`)."""
        unique_id = f"{self.charge_point_id}-{next(self.ids)}"
        future = asyncio.get_running_loop().create_future()
        self.pending[unique_id] = (future, on_answer)
        try:
            await self.ws.send(json.dumps([2, unique_id, action, payload]))
            frame = await asyncio.wait_for(future, timeout)
        finally:
            self.pending.pop(unique_id, None)
        return frame[2] if frame[0] == 3 else {}

    async def _read(self) -> None:
        async for raw in self.ws:
            frame = json.loads(raw)
            if frame[0] == 2:
                await self._answer_call(frame)
            else:
                self._resolve(frame)

    async def _answer_call(self, frame: list) -> None:
        answer, follow_up = self.answer(frame[2], frame[3])
        await self.ws.send(json.dumps([3, frame[1], answer]))
        if follow_up is not None:
            self._spawn(follow_up)

    def _resolve(self, frame: list) -> None:
        """An answer to one of our calls. A charger handles its frames in order: what an answer
        tells it (a StartTransaction's transactionId) holds before the next frame is read, which may
        be the CSMS's TxProfile for that very transaction; the caller's coroutine resumes later."""
        future, on_answer = self.pending.get(frame[1], (None, None))
        if future is None or future.done():
            return
        if on_answer is not None and frame[0] == 3:
            on_answer(frame[2])
        future.set_result(frame)

    def _spawn(self, coroutine) -> None:
        task = asyncio.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # --- answers ---------------------------------------------------------------------------------

    def answer(self, action: str, payload: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        """The answer to a CSMS call and what the charger then does (a coroutine, or None)."""
        handler = getattr(self, f"_on_{action}", None)
        if handler is None:
            return {"status": "Accepted"}, None
        return handler(payload)

    def _connector(self, number: int | None) -> Connector | None:
        if number is None:
            return next((c for c in self.sockets if c.status == "Available"), None)
        return next((c for c in self.sockets if c.number == number), None)

    def _on_RemoteStartTransaction(self, payload):
        connector = self._connector(payload.get("connectorId"))
        if (
            connector is None
            or connector.transaction_id is not None
            or connector.status not in ("Available", "Reserved")
            or (connector.status == "Reserved" and connector.reserved_tag != payload["idTag"])
        ):  # §5.13: a reserved connector starts only for its reservation's idTag
            return {"status": "Rejected"}, None
        connector.status = "Preparing"
        return {"status": "Accepted"}, self._start(connector, payload["idTag"])

    def _on_RemoteStopTransaction(self, payload):
        connector = next((c for c in self.sockets if c.transaction_id == payload["transactionId"]), None)
        if connector is None:
            return {"status": "Rejected"}, None
        return {"status": "Accepted"}, self._stop(connector, "Remote")

    def _on_GetConfiguration(self, payload):
        keys = payload.get("key") or list(self.configuration)
        known = [
            {"key": key, "readonly": key in READ_ONLY, "value": self.configuration[key]}
            for key in keys
            if key in self.configuration
        ]
        unknown = [key for key in keys if key not in self.configuration]
        answer: dict[str, Any] = {"configurationKey": known}
        if unknown:
            answer["unknownKey"] = unknown
        return answer, None

    def _on_ChangeConfiguration(self, payload):
        key = payload["key"]
        if key not in self.configuration:
            return {"status": "NotSupported"}, None
        if key in READ_ONLY:
            return {"status": "Rejected"}, None
        if key in ("HeartbeatInterval", "MeterValueSampleInterval") and not payload["value"].isdigit():
            return {"status": "Rejected"}, None
        self.configuration[key] = payload["value"]
        return {"status": "Accepted"}, None

    def _on_Reset(self, payload):
        return {"status": "Accepted"}, self._reset(payload["type"])

    def _on_ChangeAvailability(self, payload):
        status = "Available" if payload["type"] == "Operative" else "Unavailable"
        targets = self.sockets if payload["connectorId"] == 0 else [self._connector(payload["connectorId"])]
        if None in targets:
            return {"status": "Rejected"}, None
        if any(c.transaction_id is not None for c in targets):
            return {"status": "Scheduled"}, None
        return {"status": "Accepted"}, self._set_statuses(targets, status)

    def _on_UnlockConnector(self, payload):
        connector = self._connector(payload["connectorId"])
        return {"status": "Unlocked" if connector is not None else "NotSupported"}, None

    def _on_TriggerMessage(self, payload):
        requested = payload["requestedMessage"]
        connector = self._connector(payload.get("connectorId")) if payload.get("connectorId") else None
        return {"status": "Accepted"}, self._triggered(requested, connector)

    def _on_GetLocalListVersion(self, payload):
        return {"listVersion": self.local_list_version}, None

    def _on_SendLocalList(self, payload):
        self.local_list_version = payload["listVersion"]
        return {"status": "Accepted"}, None

    def _on_ReserveNow(self, payload):
        number = payload["connectorId"]
        connector = self._connector(None if number == 0 else number)  # 0: any free connector
        if connector is None:
            return {"status": "Rejected" if number else "Occupied"}, None
        if connector.status == "Unavailable":
            return {"status": "Unavailable"}, None
        if connector.status == "Faulted":
            return {"status": "Faulted"}, None
        if connector.status != "Available":
            return {"status": "Occupied"}, None
        connector.reserved_for, connector.reserved_tag = payload["reservationId"], payload["idTag"]
        return {"status": "Accepted"}, self._hold(connector, payload["reservationId"], payload["expiryDate"])

    def _on_CancelReservation(self, payload):
        connector = next((c for c in self.sockets if c.reserved_for == payload["reservationId"]), None)
        if connector is None:
            return {"status": "Rejected"}, None
        connector.reserved_for = connector.reserved_tag = None
        return {"status": "Accepted"}, self._set_statuses([connector], "Available")

    def _on_SetChargingProfile(self, payload):
        connector_id, profile = payload["connectorId"], payload["csChargingProfiles"]
        if self.rejects_profiles or charging_schedules.problems(profile, connector_id):
            return {"status": "Rejected"}, None
        if profile.get("chargingProfilePurpose") == charging_schedules.TX:
            # §5.16.3: a TxProfile needs a transaction on the connector (the one it names, if any)
            connector = self._connector(connector_id)
            if connector is None or connector.transaction_id is None:
                return {"status": "Rejected"}, None
            if profile.get("transactionId") not in (None, connector.transaction_id):
                return {"status": "Rejected"}, None
        # §5.16.1: it replaces the profile of the same id, and one of the same stack level and purpose
        self.profiles = [
            (number, installed)
            for number, installed in self.profiles
            if installed["chargingProfileId"] != profile["chargingProfileId"]
            and not (
                number == connector_id
                and installed["stackLevel"] == profile["stackLevel"]
                and installed["chargingProfilePurpose"] == profile["chargingProfilePurpose"]
            )
        ]
        self.profiles.append((connector_id, profile))
        return {"status": "Accepted"}, None

    def _on_ClearChargingProfile(self, payload):
        def matches(number: int, profile: dict[str, Any]) -> bool:
            if "id" in payload:
                return profile["chargingProfileId"] == payload["id"]
            return (
                payload.get("connectorId") in (None, number)
                and payload.get("chargingProfilePurpose") in (None, profile["chargingProfilePurpose"])
                and payload.get("stackLevel") in (None, profile["stackLevel"])
            )

        kept = [(number, profile) for number, profile in self.profiles if not matches(number, profile)]
        cleared = len(kept) < len(self.profiles)
        self.profiles = kept
        return {"status": "Accepted" if cleared else "Unknown"}, None

    def limit_a(self, connector: Connector, at: datetime | None = None) -> float:
        """The current (A per phase) the connector may draw now: its profiles and the charger's."""
        at = at or datetime.now(UTC)
        profiles = [p for number, p in self.profiles if number in (0, connector.number)]
        limit = charging_schedules.limit_at(
            profiles, at, transaction_id=connector.transaction_id, transaction_start=connector.started_at
        )
        return self.max_current_a if limit is None else min(limit, self.max_current_a)

    def drawn_a(self, connector: Connector) -> float:
        """What the car on the connector draws now: as much as it may, and as it can take."""
        if connector.transaction_id is None:
            return 0.0
        wanted = self.max_current_a if self.car_current_a is None else self.car_current_a
        return round(min(self.limit_a(connector), wanted), 1)

    def _on_GetCompositeSchedule(self, payload):
        connector = self._connector(payload["connectorId"]) if payload["connectorId"] else None
        if payload["connectorId"] and connector is None:
            return {"status": "Rejected"}, None
        start = datetime.now(UTC).replace(microsecond=0)
        connector = connector or Connector(0)
        periods: list[dict[str, Any]] = []
        for offset in self._changes(connector, start, payload["duration"]):
            limit = round(self.limit_a(connector, start + timedelta(seconds=offset)), 1)
            if not periods or periods[-1]["limit"] != limit:
                periods.append({"startPeriod": offset, "limit": limit})
        answer = {
            "status": "Accepted",
            "connectorId": payload["connectorId"],
            "scheduleStart": start.isoformat().replace("+00:00", "Z"),
            "chargingSchedule": {
                "duration": payload["duration"],
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": periods,
            },
        }
        return answer, None

    def _changes(self, connector: Connector, start: datetime, duration: int) -> list[int]:
        """The offsets within `duration` where a limit may change: each profile's period starts
        (and recurrences), validity bounds and ends, seen from `start`."""
        offsets = {0}
        for number, profile in self.profiles:
            if number not in (0, connector.number):
                continue
            schedule = profile["chargingSchedule"]
            bases = [connector.started_at] if profile["chargingProfileKind"] == "Relative" else []
            if schedule.get("startSchedule"):
                first = parse_utc(schedule["startSchedule"])
                period = charging_schedules.RECURRENCY.get(profile.get("recurrencyKind") or "")
                bases.append(first)
                if period is not None and start > first:
                    current = first + period * ((start - first) // period)
                    bases += [current, current + period]
            moments = [parse_utc(profile[key]) for key in ("validFrom", "validTo") if profile.get(key)]
            for base in filter(None, bases):
                moments += [
                    base + timedelta(seconds=p["startPeriod"]) for p in schedule["chargingSchedulePeriod"]
                ]
                if schedule.get("duration") is not None:
                    moments.append(base + timedelta(seconds=schedule["duration"]))
            offsets |= {int((m - start).total_seconds()) for m in moments}
        return sorted(offset for offset in offsets if 0 <= offset < duration)

    def _on_DataTransfer(self, payload):
        return {"status": "UnknownVendorId"}, None

    def _on_GetDiagnostics(self, payload):
        name = f"diagnostics-{self.charge_point_id}.log"
        return {"fileName": name}, self._upload_diagnostics(payload["location"], name)

    def _on_UpdateFirmware(self, payload):
        return {}, self._update_firmware(payload["location"], payload["retrieveDate"])

    # --- what follows an answer ------------------------------------------------------------------

    async def _status(self, connector: Connector, status: str) -> None:
        connector.status = status
        await self.call(
            "StatusNotification",
            {
                "connectorId": connector.number,
                "errorCode": "NoError",
                "status": status,
                "timestamp": now_iso(),
            },
        )

    async def _set_statuses(self, connectors: list[Connector], status: str) -> None:
        for connector in connectors:
            await self._status(connector, status)

    async def _start(self, connector: Connector, id_tag: str) -> None:
        await self._status(connector, "Preparing")
        payload: dict[str, Any] = {
            "connectorId": connector.number,
            "idTag": id_tag,
            "meterStart": self.register_wh,
            "timestamp": now_iso(),
        }
        if connector.reserved_for is not None:
            payload["reservationId"] = connector.reserved_for
            connector.reserved_for = connector.reserved_tag = None

        def started(answer: dict[str, Any]) -> None:
            connector.transaction_id, connector.id_tag = answer.get("transactionId"), id_tag
            connector.started_at = datetime.now(UTC)

        answer = await self.call("StartTransaction", payload, on_answer=started)
        if (answer.get("idTagInfo") or {}).get("status") != "Accepted":
            await self._stop(connector, "DeAuthorized")
            return
        await self._status(connector, "Charging")
        self._spawn(self._meter(connector))

    async def _meter(self, connector: Connector) -> None:
        while connector.transaction_id is not None:
            interval = max(int(self.configuration["MeterValueSampleInterval"]), 1)
            await asyncio.sleep(interval)
            if connector.transaction_id is None:
                return
            current = self.drawn_a(connector)
            power = self._power(current)
            self.register_wh += round(power * interval / 3600)
            await self.call("MeterValues", self._meter_values(connector, power, current))

    def _power(self, current_a: float) -> int:
        return round(current_a * charging_schedules.VOLTAGE * self.phases)

    def _meter_values(self, connector: Connector, power_w: int, current_a: float = 0.0) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "connectorId": connector.number,
            "meterValue": [
                {
                    "timestamp": now_iso(),
                    "sampledValue": [
                        {
                            "value": str(self.register_wh),
                            "measurand": "Energy.Active.Import.Register",
                            "unit": "Wh",
                        },
                        {"value": str(power_w), "measurand": "Power.Active.Import", "unit": "W"},
                        {"value": str(current_a), "measurand": "Current.Import", "unit": "A"},
                    ],
                }
            ],
        }
        if connector.transaction_id is not None:
            payload["transactionId"] = connector.transaction_id
        return payload

    async def _stop(self, connector: Connector, reason: str) -> None:
        transaction_id, connector.transaction_id = connector.transaction_id, None
        if transaction_id is None:
            return
        # §3.13.2: a TxProfile lasts as long as its transaction
        self.profiles = [
            (number, profile)
            for number, profile in self.profiles
            if not (number == connector.number and profile["chargingProfilePurpose"] == charging_schedules.TX)
        ]
        await self.call(
            "StopTransaction",
            {
                "transactionId": transaction_id,
                "meterStop": self.register_wh,
                "timestamp": now_iso(),
                "reason": reason,
                "idTag": connector.id_tag,
            },
        )
        await self._status(connector, "Finishing")
        await self._status(connector, "Available")

    async def _reset(self, kind: str) -> None:
        for connector in self.sockets:
            await self._stop(connector, "HardReset" if kind == "Hard" else "SoftReset")
        await asyncio.sleep(1)
        await self.ws.close()  # `run` reconnects and boots again

    async def _triggered(self, requested: str, connector: Connector | None) -> None:
        if requested == "BootNotification":
            await self._boot()
        elif requested == "Heartbeat":
            await self.call("Heartbeat", {})
        elif requested == "StatusNotification":
            for each in [connector] if connector else self.sockets:
                await self._status(each, each.status)
        elif requested == "MeterValues":
            for each in [connector] if connector else self.sockets:
                await self.call(
                    "MeterValues",
                    self._meter_values(each, self._power(self.drawn_a(each)), self.drawn_a(each)),
                )
        elif requested == "DiagnosticsStatusNotification":
            await self.call("DiagnosticsStatusNotification", {"status": "Idle"})
        elif requested == "FirmwareStatusNotification":
            await self.call("FirmwareStatusNotification", {"status": "Idle"})

    async def _hold(self, connector: Connector, reservation_id: int, expiry: str) -> None:
        """Reserved until the expiry, then Available again unless used or cancelled meanwhile."""
        await self._status(connector, "Reserved")
        await asyncio.sleep(max(_seconds_until(expiry), 0))
        if connector.reserved_for == reservation_id:
            connector.reserved_for = connector.reserved_tag = None
            await self._status(connector, "Available")

    async def _upload_diagnostics(self, location: str, name: str) -> None:
        """Upload a small log by HTTP PUT to the location plus the file name (FTP is not simulated:
        UploadFailed)."""
        await self.call("DiagnosticsStatusNotification", {"status": "Uploading"})
        body = f"{now_iso()} {self.charge_point_id} firmware {self.firmware_version}: all well\n".encode()
        try:
            await asyncio.to_thread(_http, "PUT", location.rstrip("/") + "/" + name, body)
            status = "Uploaded"
        except (OSError, ValueError) as exc:
            log.info("%s: diagnostics upload to %s failed: %s", self.charge_point_id, location, exc)
            status = "UploadFailed"
        await self.call("DiagnosticsStatusNotification", {"status": status})

    async def _update_firmware(self, location: str, retrieve_date: str) -> None:
        """Wait for the retrieve date, download the image, install it and reboot with the new
        version (named after the file: `sim-2.0.bin` installs version `sim-2.0`)."""
        await asyncio.sleep(min(max(_seconds_until(retrieve_date), 0), 3600))
        await self.call("FirmwareStatusNotification", {"status": "Downloading"})
        try:
            await asyncio.to_thread(_http, "GET", location, None)
        except (OSError, ValueError) as exc:
            log.info("%s: firmware download from %s failed: %s", self.charge_point_id, location, exc)
            await self.call("FirmwareStatusNotification", {"status": "DownloadFailed"})
            return
        for step in ("Downloaded", "Installing", "Installed"):
            await asyncio.sleep(0.5)
            await self.call("FirmwareStatusNotification", {"status": step})
        stem = location.rstrip("/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
        self.firmware_version = (stem or "updated")[:50]
        await self._reset("Soft")


def _seconds_until(timestamp: str) -> float:
    when = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - datetime.now(UTC)).total_seconds()


def _http(method: str, url: str, body: bytes | None) -> bytes:
    """One HTTP(S) request (ftp:// and other schemes: ValueError)."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an HTTP location: {url}")
    request = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        request.add_header("Content-Type", "text/plain")
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read()
