"""`csms-sim --obey`: chargers that do what the CSMS asks. Every CSMS-initiated action gets a
schema-valid answer; against a real CSMS, a customer's app session is started and stopped through
the REST API and billed from the energy the charger reports."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from decimal import Decimal

import pytest

from csms.ocpp.validation import CSMS_ACTIONS, validate_response
from csms.sim.cli import parse_args
from csms.sim.obedient import ObedientCharger
from tests.support.deployment import AUTH_KEY, deployment
from tests.support.http import Http
from tests.support.processes import wait_until

REQUESTS = {
    "CancelReservation": {"reservationId": 7},
    "ChangeAvailability": {"connectorId": 1, "type": "Inoperative"},
    "ChangeConfiguration": {"key": "HeartbeatInterval", "value": "120"},
    "ClearCache": {},
    "ClearChargingProfile": {},
    "DataTransfer": {"vendorId": "acme"},
    "GetCompositeSchedule": {"connectorId": 1, "duration": 3600},
    "GetConfiguration": {"key": ["HeartbeatInterval", "Nonsense"]},
    "GetDiagnostics": {"location": "ftp://logs.example/"},
    "GetLocalListVersion": {},
    "RemoteStartTransaction": {"idTag": "TAG"},
    "RemoteStopTransaction": {"transactionId": 99},
    "ReserveNow": {
        "connectorId": 1,
        "expiryDate": "2030-01-01T00:00:00Z",
        "idTag": "TAG",
        "reservationId": 7,
    },
    "Reset": {"type": "Soft"},
    "SendLocalList": {"listVersion": 3, "updateType": "Full"},
    "SetChargingProfile": {"connectorId": 1, "csChargingProfiles": {}},
    "TriggerMessage": {"requestedMessage": "Heartbeat"},
    "UnlockConnector": {"connectorId": 2},
    "UpdateFirmware": {"location": "https://fw.example/1.1.bin", "retrieveDate": "2030-01-01T00:00:00Z"},
}


@pytest.mark.parametrize("action", sorted(CSMS_ACTIONS))
def test_every_csms_action_gets_a_schema_valid_answer(action):
    charger = ObedientCharger("CP-1", "key", "ws://unused")
    answer, follow_up = charger.answer(action, REQUESTS[action])
    validate_response(action, answer)
    if follow_up is not None:
        follow_up.close()  # not run: there is no connection here


def test_it_answers_like_a_charger_would():
    charger = ObedientCharger("CP-1", "key", "ws://unused")
    assert charger.answer("RemoteStopTransaction", {"transactionId": 99})[0] == {"status": "Rejected"}
    assert charger.answer("ChangeConfiguration", {"key": "NumberOfConnectors", "value": "9"})[0] == {
        "status": "Rejected"
    }
    assert charger.answer("ChangeConfiguration", {"key": "Nope", "value": "1"})[0] == {
        "status": "NotSupported"
    }
    accepted, _ = charger.answer("ChangeConfiguration", {"key": "MeterValueSampleInterval", "value": "1"})
    assert accepted == {"status": "Accepted"} and charger.configuration["MeterValueSampleInterval"] == "1"
    assert charger.answer("GetConfiguration", {"key": ["MeterValueSampleInterval", "Nope"]})[0] == {
        "configurationKey": [{"key": "MeterValueSampleInterval", "readonly": False, "value": "1"}],
        "unknownKey": ["Nope"],
    }
    started, follow_up = charger.answer("RemoteStartTransaction", {"idTag": "TAG", "connectorId": 2})
    follow_up.close()
    assert started == {"status": "Accepted"} and charger.sockets[1].status == "Preparing"
    busy, _ = charger.answer("RemoteStartTransaction", {"idTag": "TAG", "connectorId": 2})
    assert busy == {"status": "Rejected"}


def test_the_demo_charger_is_the_default_with_obey():
    args = parse_args(["--obey"])
    assert (args.obey, str(args.demo), args.duration) == (True, "instance/demo-credentials.json", None)
    with pytest.raises(SystemExit):
        parse_args([])  # without --obey a fleet is needed


@pytest.mark.slow
def test_an_app_session_on_an_obedient_charger_is_charged_and_billed(tmp_path, sqlite_template):
    with deployment(
        "embedded",
        tmp_path,
        sqlite_template=sqlite_template,
        charge_points={"OBEY-1": AUTH_KEY},
        tariff={"energy_price": Decimal("0.4000")},
        # the CSMS's boot profile sets the sample interval, as an operator would
        env={"CSMS_PAYMENT_PROVIDER": "development", "CSMS_BOOT_CONFIGURATION": "MeterValueSampleInterval=1"},
    ) as csms:
        charger = ObedientCharger("OBEY-1", AUTH_KEY, csms.ws_url)
        loop = asyncio.new_event_loop()

        def live() -> None:
            with contextlib.suppress(asyncio.CancelledError):
                loop.run_until_complete(charger.run(60))

        thread = threading.Thread(target=live, daemon=True)
        thread.start()
        try:
            assert wait_until(
                lambda: csms.scalar("SELECT count(*) FROM connectors WHERE status = 'Available'") == 2
            )
            app = Http(csms.web.base_url)
            status, body = app(
                "POST", "/api/auth/register", {"email": "ada@example.test", "password": "password-123"}
            )
            app.token = body["access_token"]
            assert app("POST", "/api/user/wallet/topup", {"amount": "20.00"})[0] == 200
            status, session = app(
                "POST", "/api/user/charging/start", {"deviceId": "OBEY-1", "connectorId": 1, "amount": "10"}
            )
            assert status == 201, session
            path = f"/api/user/charging/sessions/{session['id']}"
            assert wait_until(lambda: app("GET", path)[1].get("energyWh", 0) > 0, timeout=20)
            status, stopped = app("POST", "/api/user/charging/stop", {"sessionId": session["id"]})
            assert status == 200, stopped
            assert wait_until(lambda: app("GET", path)[1]["state"] == "completed", timeout=20)
            final = app("GET", path)[1]
            energy = final["energyWh"]
            assert energy > 0 and Decimal(final["cost"]) == (
                Decimal(energy) / 1000 * Decimal("0.40")
            ).quantize(Decimal("0.01"))
        finally:
            loop.call_soon_threadsafe(lambda: [task.cancel() for task in asyncio.all_tasks(loop)])
            thread.join(timeout=10)


def test_it_reserves_like_a_charger_would():
    charger = ObedientCharger("CP-1", "key", "ws://unused")
    expiry = "2030-01-01T00:00:00Z"
    held, follow_up = charger.answer(
        "ReserveNow", {"connectorId": 0, "expiryDate": expiry, "idTag": "ADA", "reservationId": 5}
    )
    follow_up.close()
    charger.sockets[0].status = "Reserved"  # as the follow-up would have reported it
    assert held == {"status": "Accepted"} and charger.sockets[0].reserved_for == 5
    assert charger.answer("RemoteStartTransaction", {"idTag": "BOB", "connectorId": 1})[0] == {
        "status": "Rejected"
    }
    started, follow_up = charger.answer("RemoteStartTransaction", {"idTag": "ADA", "connectorId": 1})
    follow_up.close()
    assert started == {"status": "Accepted"}
    charger.sockets[1].status = "Unavailable"
    refused, _ = charger.answer(
        "ReserveNow", {"connectorId": 2, "expiryDate": expiry, "idTag": "ADA", "reservationId": 6}
    )
    assert refused == {"status": "Unavailable"}
