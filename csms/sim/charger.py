"""One simulated charge point: connects with Basic auth, boots, reports status, runs a transaction
with meter values, and answers the CSMS's calls the way a well-behaved charger does."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Stats:
    """What one process measured; merged across processes for the report."""

    latencies_ms: list[float] = field(default_factory=list)
    sent: int = 0
    errors: int = 0  # CALLERROR answers
    timeouts: int = 0
    connect_failures: int = 0
    disconnects: int = 0
    connect_ms: list[float] = field(default_factory=list)
    answered_at: list[float] = field(default_factory=list)  # time.monotonic() of each answer
    answered_actions: list[str] = field(default_factory=list)  # the action of each answer
    csms_calls: int = 0

    def merge(self, other: Stats) -> None:
        self.latencies_ms += other.latencies_ms
        self.connect_ms += other.connect_ms
        self.answered_at += other.answered_at
        self.answered_actions += other.answered_actions
        for name in ("sent", "errors", "timeouts", "connect_failures", "disconnects", "csms_calls"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class Plan:
    url: str
    mode: str  # "closed" (next message as soon as answered) or "rate" (fixed messages per second)
    rate: float  # messages per second per charger, in rate mode
    duration: float
    meter_every: int  # every n-th message is a MeterValues of the running transaction
    timeout: float


class SimulatedCharger:
    def __init__(self, charge_point_id: str, key: str, plan: Plan, stats: Stats):
        self.id = charge_point_id
        self.key = key
        self.plan = plan
        self.stats = stats
        self.ids = itertools.count(1)
        self.pending: dict[str, asyncio.Future] = {}
        self.register_wh = 0
        self.transaction_id: int | None = None
        self.ws: ClientConnection | None = None

    async def run(self, started: asyncio.Event | None = None) -> None:
        begin = time.perf_counter()
        token = base64.b64encode(f"{self.id}:{self.key}".encode()).decode()
        try:
            self.ws = await connect(
                f"{self.plan.url.rstrip('/')}/ocpp/{self.id}",
                subprotocols=["ocpp1.6"],
                additional_headers={"Authorization": f"Basic {token}"},
                compression=None,
                open_timeout=30,
                ping_interval=None,
                max_size=2**20,
            )
        except Exception:
            self.stats.connect_failures += 1
            return
        self.stats.connect_ms.append((time.perf_counter() - begin) * 1000)
        reader = asyncio.create_task(self._read())
        try:
            if started is not None:
                await started.wait()
            await self._session()
        except ConnectionClosed:
            self.stats.disconnects += 1
        finally:
            reader.cancel()
            await self.ws.close()

    async def _session(self) -> None:
        await self.call("BootNotification", {"chargePointVendor": "csms-sim", "chargePointModel": "Sim-1"})
        await self.call(
            "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available"}
        )
        answer = await self.call(
            "StartTransaction",
            {"connectorId": 1, "idTag": "SIM-TAG", "meterStart": 0, "timestamp": now_iso()},
        )
        if answer is not None:
            self.transaction_id = answer.get("transactionId")
        deadline = time.monotonic() + self.plan.duration
        interval = 1.0 / self.plan.rate if self.plan.mode == "rate" else 0.0
        # A random phase, as a fleet's heartbeat timers have: chargers that connected in the same
        # instant do not all send in the same instant for the rest of the run.
        next_at = time.monotonic() - random.uniform(0.0, interval)
        for n in itertools.count(1):
            if time.monotonic() >= deadline:
                break
            if interval:
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            if self.plan.meter_every and n % self.plan.meter_every == 0 and self.transaction_id is not None:
                self.register_wh += 250
                await self.call(
                    "MeterValues",
                    {
                        "connectorId": 1,
                        "transactionId": self.transaction_id,
                        "meterValue": [
                            {"timestamp": now_iso(), "sampledValue": [{"value": str(self.register_wh)}]}
                        ],
                    },
                )
            else:
                await self.call("Heartbeat", {})
        if self.transaction_id is not None:
            await self.call(
                "StopTransaction",
                {
                    "transactionId": self.transaction_id,
                    "meterStop": self.register_wh,
                    "timestamp": now_iso(),
                },
            )

    async def call(self, action: str, payload: dict[str, Any]) -> dict | None:
        unique_id = f"{next(self.ids)}"
        future = asyncio.get_running_loop().create_future()
        self.pending[unique_id] = future
        sent = time.perf_counter()
        await self.ws.send(json.dumps([2, unique_id, action, payload], separators=(",", ":")))
        self.stats.sent += 1
        try:
            frame = await asyncio.wait_for(future, self.plan.timeout)
        except TimeoutError:
            self.stats.timeouts += 1
            return None
        finally:
            self.pending.pop(unique_id, None)
        self.stats.latencies_ms.append((time.perf_counter() - sent) * 1000)
        self.stats.answered_at.append(time.monotonic())
        self.stats.answered_actions.append(action)
        if frame[0] == 4:
            self.stats.errors += 1
            return None
        return frame[2]

    async def _read(self) -> None:
        async for raw in self.ws:
            frame = json.loads(raw)
            if frame[0] == 2:
                self.stats.csms_calls += 1
                await self.ws.send(json.dumps([3, frame[1], self._answer(frame[2], frame[3])]))
            else:
                future = self.pending.get(frame[1])
                if future is not None and not future.done():
                    future.set_result(frame)

    def _answer(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """What a cooperative charger answers to the CSMS's calls."""
        return ANSWERS.get(action, {"status": "Accepted"})


# Schema-valid answers of a cooperative charger; every other action is answered {"status": "Accepted"}.
ANSWERS: dict[str, dict[str, Any]] = {
    "GetConfiguration": {
        "configurationKey": [{"key": "HeartbeatInterval", "readonly": False, "value": "300"}]
    },
    "GetLocalListVersion": {"listVersion": 0},
    "UnlockConnector": {"status": "Unlocked"},
    "GetDiagnostics": {},
    "UpdateFirmware": {},
}
