"""Obedient simulated chargers (csms.sim.obedient) on one asyncio loop in a thread, for tests that
drive them from synchronous code: start and stop cars, read what each charger was told."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from typing import Any

from csms.sim.obedient import ObedientCharger


class SilentCharger(ObedientCharger):
    """An obedient charger that never answers SetChargingProfile while `silent` is set (a charger
    whose firmware hangs on it, or a link that drops the frame)."""

    silent = False

    async def _answer_call(self, frame: list) -> None:
        if frame[2] == "SetChargingProfile" and self.silent:
            return
        await super()._answer_call(frame)


class Fleet:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.chargers: dict[str, ObedientCharger] = {}
        self.lives: dict[str, Future] = {}

    def run(self, coroutine) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=30)

    def connect(self, charger: ObedientCharger) -> ObedientCharger:
        self.chargers[charger.charge_point_id] = charger
        self.lives[charger.charge_point_id] = asyncio.run_coroutine_threadsafe(charger.run(), self.loop)
        return charger

    def disconnect(self, charge_point_id: str) -> None:
        """The charger drops off the network, its car still charging (its state stays as it was)."""
        self.lives.pop(charge_point_id).cancel()

    def start_car(self, charge_point_id: str, id_tag: str, connector: int = 1) -> None:
        charger = self.chargers[charge_point_id]
        socket = charger.sockets[connector - 1]
        self.run(charger._start(socket, id_tag))

    def stop_car(self, charge_point_id: str, connector: int = 1) -> None:
        charger = self.chargers[charge_point_id]
        self.run(charger._stop(charger.sockets[connector - 1], "Local"))

    def close(self) -> None:
        async def end_everything() -> None:
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(end_everything())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
