"""The baseline: the minimal central system a Python user would write with the `ocpp` library's
asyncio `ChargePoint` and `websockets`, default settings, no storage. It answers the same charger
actions our simulator sends; the benchmarks run it side by side with the CSMS.

    python bench/baseline/central_system.py --port 9100
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
from datetime import UTC, datetime

import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call_result
from ocpp.v16.enums import AuthorizationStatus, RegistrationStatus

_transaction_ids = itertools.count(1)


def _now() -> str:
    return datetime.now(UTC).isoformat()


class CentralSystemChargePoint(ChargePoint):
    @on("BootNotification")
    async def on_boot(self, charge_point_vendor, charge_point_model, **kwargs):
        return call_result.BootNotification(
            current_time=_now(), interval=300, status=RegistrationStatus.accepted
        )

    @on("Heartbeat")
    async def on_heartbeat(self, **kwargs):
        return call_result.Heartbeat(current_time=_now())

    @on("StatusNotification")
    async def on_status(self, **kwargs):
        return call_result.StatusNotification()

    @on("MeterValues")
    async def on_meter_values(self, **kwargs):
        return call_result.MeterValues()

    @on("StartTransaction")
    async def on_start(self, **kwargs):
        return call_result.StartTransaction(
            transaction_id=next(_transaction_ids), id_tag_info={"status": AuthorizationStatus.accepted}
        )

    @on("StopTransaction")
    async def on_stop(self, **kwargs):
        return call_result.StopTransaction()


async def on_connect(connection):
    charge_point_id = connection.request.path.rstrip("/").split("/")[-1]
    await CentralSystemChargePoint(charge_point_id, connection).start()


async def serve(port: int) -> None:
    async with websockets.serve(on_connect, "127.0.0.1", port, subprotocols=["ocpp1.6"]):
        await asyncio.Future()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=9100)
    asyncio.run(serve(parser.parse_args().port))
