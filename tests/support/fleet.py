"""Many chargers at once, on asyncio: each connects with Basic auth, runs a script of calls, and
records every answer. CSMS-initiated calls (the boot profile) are answered with Accepted."""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import connect

from tests.support.chargers import basic_auth


@dataclass
class FleetResult:
    answers: list[list] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def results(self) -> list[list]:
        return [a for a in self.answers if a[0] == 3]


async def _charger(
    ws_url: str, charge_point_id: str, key: str, script, ready: asyncio.Barrier, result: FleetResult
):
    counter = itertools.count()
    try:
        async with connect(
            f"{ws_url}/ocpp/{charge_point_id}",
            subprotocols=["ocpp1.6"],
            additional_headers=basic_auth(charge_point_id, key),
            compression=None,
            open_timeout=60,
            ping_interval=None,
        ) as ws:
            await ready.wait()  # every charger is connected before any sends
            steps = script(charge_point_id)
            frame = None
            while True:
                try:  # the script receives each answer, e.g. to use the transactionId it was given
                    action, payload = steps.send(frame) if frame is not None else next(steps)
                except StopIteration:
                    break
                unique_id = f"{charge_point_id}-{next(counter)}"
                await ws.send(json.dumps([2, unique_id, action, payload]))
                while True:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 60))
                    if frame[0] == 2:
                        await ws.send(json.dumps([3, frame[1], {"status": "Accepted"}]))
                        continue
                    break
                if frame[1] != unique_id:
                    result.failures.append(f"{charge_point_id}: answer for {frame[1]}, expected {unique_id}")
                result.answers.append(frame)
    except Exception as exc:  # a charger that fails is reported, not raised, so the others finish
        result.failures.append(f"{charge_point_id}: {type(exc).__name__}: {exc}")
        ready.abort() if not ready.broken else None


async def _run(ws_url: str, chargers: dict[str, str], script) -> FleetResult:
    result = FleetResult()
    ready = asyncio.Barrier(len(chargers))
    await asyncio.gather(*(_charger(ws_url, cp, key, script, ready, result) for cp, key in chargers.items()))
    return result


def run_fleet(ws_url: str, chargers: dict[str, str], script: Any, timeout: float = 240) -> FleetResult:
    """Run `script(charge_point_id)` on every charger concurrently: a generator yielding
    `(action, payload)` and receiving each answer frame back from `yield`."""
    return asyncio.run(asyncio.wait_for(_run(ws_url, chargers, script), timeout))
