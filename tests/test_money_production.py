"""Money in production mode, end to end: a real charger over a WebSocket, the web process, a
`dramatiq` worker, RabbitMQ and PostgreSQL. A prepaid owner below CSMS_MIN_BALANCE is refused at
Authorize, and accepted once topped up (the web node follows the wallet's announcement); an app
session gets its MeterValueSampleInterval set, is stopped before its budget, and the energy the
charger delivered past it is billed up to the hold and reported."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.support.chargers import RawCharger
from tests.support.deployment import AUTH_KEY, deployment
from tests.support.processes import wait_until
from tests.test_api_charging import Http, answer_while, in_background, remote_stop_received

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.rabbitmq]

PRICES = {  # 11 kW costs (11 x 0.40 + 1.20) x 1.2 = 6.72 an hour
    "energy_price": Decimal("0.40"),
    "time_price": Decimal("1.20"),
    "session_fee": Decimal("0.50"),
    "tax_percent": Decimal("20"),
}


@pytest.fixture(scope="module")
def csms(tmp_path_factory, postgres_databases, rabbitmq_url):
    with deployment(
        "production",
        tmp_path_factory.mktemp("money"),
        database_url=postgres_databases(),
        rabbitmq_url=rabbitmq_url,
        env={
            "CSMS_BOOT_CONFIGURATION": "",
            "CSMS_PAYMENT_PROVIDER": "development",
            "CSMS_MIN_BALANCE": "5.00",
            "CSMS_SESSION_SAMPLE_INTERVAL": "5",
            "CSMS_DISPATCH_INTERVAL": "0.2",
        },
        charge_points={"MONEY-1": AUTH_KEY},
        customers={"poor@example.test": ("POOR-TAG", 200), "rich@example.test": ("RICH-TAG", 5000)},
        tariff=PRICES,
    ) as running:
        yield running


def authorize(cp: RawCharger, tag: str) -> str:
    return cp.call("Authorize", {"idTag": tag})[2]["idTagInfo"]["status"]


def test_a_prepaid_owner_below_the_minimum_is_refused_at_authorize_until_topped_up(csms):
    poor = Http(csms.web.base_url).login("poor@example.test")
    with RawCharger(csms.ws_url, "MONEY-1", AUTH_KEY) as cp:
        cp.boot()
        assert [authorize(cp, tag) for tag in ("POOR-TAG", "RICH-TAG", "NO-SUCH-TAG")] == [
            "Blocked",
            "Accepted",
            "Invalid",
        ]
        assert poor("POST", "/api/user/wallet/topup", {"amount": "3.00"})[0] == 200  # 5.00 now
        assert wait_until(lambda: authorize(cp, "POOR-TAG") == "Accepted", timeout=10)


def test_an_app_session_is_stopped_before_its_budget_and_its_overrun_reported(csms):
    rich = Http(csms.web.base_url).login("rich@example.test")
    answers = {
        "RemoteStartTransaction": {"status": "Accepted"},
        "RemoteStopTransaction": {"status": "Accepted"},
    }
    with RawCharger(csms.ws_url, "MONEY-1", AUTH_KEY, answers=answers) as cp:
        cp.boot()
        thread, result = in_background(
            rich,
            "POST",
            "/api/user/charging/start",
            {"deviceId": "MONEY-1", "connectorId": 1, "amount": "3.00"},
        )
        answer_while(cp, thread)
        status, session = result["value"]
        assert status == 201, session
        start = {
            "connectorId": 1,
            "idTag": "RICH-TAG",
            "meterStart": 1000,
            "timestamp": "2026-09-01T10:00:00Z",
        }
        transaction_id = cp.call("StartTransaction", start)[2]["transactionId"]
        interval = ["ChangeConfiguration", {"key": "MeterValueSampleInterval", "value": "5"}]
        assert wait_until(
            lambda: cp.call("Heartbeat", {}) and any(c[2:] == interval for c in cp.received_calls), timeout=15
        )

        def reading(minute: int, wh: int) -> None:
            sampled = [
                {"value": str(wh), "unit": "Wh"},
                {"value": "11000", "unit": "W", "measurand": "Power.Active.Import"},
            ]
            values = [{"timestamp": f"2026-09-01T10:{minute}:00Z", "sampledValue": sampled}]
            cp.call("MeterValues", {"connectorId": 1, "transactionId": transaction_id, "meterValue": values})

        reading(10, 1000 + 1833)  # 1.72 spent: 685 s left at 11 kW
        reading(21, 1000 + 3850)  # 2.95 spent: 27 s left, within the 30 s margin
        assert remote_stop_received(cp, transaction_id, limit=30)
        stop = {
            "transactionId": transaction_id,
            "meterStop": 1000 + 4217,
            "timestamp": "2026-09-01T10:23:00Z",
        }
        cp.call("StopTransaction", stop)  # the charger overran until 10:23: 3.18

    path = f"/api/user/charging/sessions/{session['id']}"
    assert wait_until(lambda: rich("GET", path)[1]["state"] == "completed", timeout=30)
    billed = rich("GET", path)[1]
    assert (billed["cost"], billed["unbilled"], billed["unbilledWh"]) == ("3.00", "0.18", 238)
    assert billed["breakdown"] == {
        "energy": "1.69",
        "time": "0.46",
        "sessionFee": "0.50",
        "tax": "0.53",
        "total": "3.18",
    }
    assert billed["tariff"]["energyPrice"] == "0.4000"
