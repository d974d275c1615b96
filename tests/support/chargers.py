"""Simulated chargers for tests, over real WebSockets.

`RawCharger` speaks OCPP-J frame by frame (websockets' sync client), for exact-frame assertions
and bad input. `LibraryCharger` is the `ocpp` library's asyncio `ChargePoint` in a thread, answering
CSMS-initiated calls the way a real charger would.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import threading
import uuid
from typing import Any

import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import (
    AvailabilityStatus,
    ConfigurationStatus,
    RegistrationStatus,
    RemoteStartStopStatus,
    ResetStatus,
    TriggerMessageStatus,
)
from websockets.sync.client import connect


def basic_auth(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


class RawCharger:
    """A charger that sends exactly what the test says and answers CSMS calls with `answers`."""

    def __init__(
        self,
        ws_url: str,
        charge_point_id: str,
        auth_key: str | None,
        *,
        subprotocols: list[str] | None = None,
        answers: dict[str, dict] | None = None,
        compression: str | None = None,
    ):
        headers = basic_auth(charge_point_id, auth_key) if auth_key is not None else {}
        self.ws = connect(
            f"{ws_url}/ocpp/{charge_point_id}",
            subprotocols=["ocpp1.6"] if subprotocols is None else subprotocols,
            additional_headers=headers,
            open_timeout=10,
            compression=compression,
            max_size=None,
            legacy=True,
        )
        self.answers = {"ChangeConfiguration": {"status": "Accepted"}, **(answers or {})}
        self.received_calls: list[list] = []

    def __enter__(self) -> RawCharger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.ws.close()

    def send(self, frame: Any) -> None:
        self.ws.send(frame if isinstance(frame, str | bytes) else json.dumps(frame))

    def recv(self, timeout: float = 10) -> list:
        """The next frame that is not a CSMS-initiated CALL (those are answered and kept)."""
        while True:
            frame = json.loads(self.ws.recv(timeout=timeout))
            if frame[0] == 2:
                self.received_calls.append(frame)
                self.ws.send(json.dumps([3, frame[1], self.answers.get(frame[2], {})]))
                continue
            return frame

    def call(self, action: str, payload: dict, unique_id: str | None = None) -> list:
        unique_id = unique_id or str(uuid.uuid4())[:8]
        self.send([2, unique_id, action, payload])
        reply = self.recv()
        assert reply[1] == unique_id, reply
        return reply

    def boot(self) -> list:
        return self.call("BootNotification", {"chargePointVendor": "ACME", "chargePointModel": "Test-1"})


class _TestChargePoint(ChargePoint):
    """Answers the CSMS-initiated calls the tests exercise; `delay` makes it slow on purpose."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.delay = 0.0
        self.configuration = {"HeartbeatInterval": "300", "MeterValueSampleInterval": "60"}

    async def _pause(self) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)

    @on("RemoteStartTransaction")
    async def on_remote_start(self, id_tag, **kwargs):
        await self._pause()
        return call_result.RemoteStartTransaction(status=RemoteStartStopStatus.accepted)

    @on("RemoteStopTransaction")
    async def on_remote_stop(self, transaction_id, **kwargs):
        await self._pause()
        return call_result.RemoteStopTransaction(status=RemoteStartStopStatus.accepted)

    @on("ChangeConfiguration")
    async def on_change_configuration(self, key, value, **kwargs):
        await self._pause()
        self.configuration[key] = value
        return call_result.ChangeConfiguration(status=ConfigurationStatus.accepted)

    @on("GetConfiguration")
    async def on_get_configuration(self, key=None, **kwargs):
        await self._pause()
        keys = key or list(self.configuration)
        known = [
            {"key": k, "readonly": False, "value": self.configuration[k]}
            for k in keys
            if k in self.configuration
        ]
        unknown = [k for k in keys if k not in self.configuration]
        return call_result.GetConfiguration(configuration_key=known, unknown_key=unknown or None)

    @on("Reset")
    async def on_reset(self, type, **kwargs):
        await self._pause()
        return call_result.Reset(status=ResetStatus.accepted)

    @on("TriggerMessage")
    async def on_trigger_message(self, requested_message, **kwargs):
        await self._pause()
        return call_result.TriggerMessage(status=TriggerMessageStatus.accepted)

    @on("ChangeAvailability")
    async def on_change_availability(self, connector_id, type, **kwargs):
        await self._pause()
        return call_result.ChangeAvailability(status=AvailabilityStatus.accepted)


class LibraryCharger:
    """The `ocpp` library's charge point, connected and booted, running in its own thread."""

    charge_point_class: type[ChargePoint] = _TestChargePoint  # a subclass answers more calls

    def __init__(self, ws_url: str, charge_point_id: str, auth_key: str):
        self.ws_url = ws_url
        self.charge_point_id = charge_point_id
        self.auth_key = auth_key
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.charge_point: Any = None
        self.connection = None

    def __enter__(self) -> LibraryCharger:
        self.thread.start()
        self.run(self._connect(), timeout=15)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.run(self.connection.close(), timeout=5)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=5)

    def run(self, coroutine, timeout: float = 10):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    async def _connect(self) -> None:
        self.connection = await websockets.connect(
            f"{self.ws_url}/ocpp/{self.charge_point_id}",
            subprotocols=["ocpp1.6"],
            additional_headers=basic_auth(self.charge_point_id, self.auth_key),
        )
        self.charge_point = self.charge_point_class(self.charge_point_id, self.connection)
        self.listener = self.loop.create_task(self._listen())
        response = await self.charge_point.call(
            call.BootNotification(charge_point_model="Test-1", charge_point_vendor="ACME")
        )
        assert response.status == RegistrationStatus.accepted, response

    async def _listen(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):  # the test or the CSMS closed it
            await self.charge_point.start()

    def set_delay(self, seconds: float) -> None:
        self.charge_point.delay = seconds

    def disconnect(self) -> None:
        self.run(self.connection.close(), timeout=5)
