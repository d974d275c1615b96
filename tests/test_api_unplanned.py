"""Issue #14, finding 3 (energy delivered but never billed), reproduced in production mode: a real
web process, a `dramatiq actors` worker, PostgreSQL, RabbitMQ and a real WebSocket charger.

- A charger that accepts RemoteStart after the REST call's 504 (hold refunded), then starts with the
  app's idTag and charges 10 kWh: the energy is captured from a new hold of the same amount.
- A second StartTransaction on a connector already charging, with the same app tag: answered
  ConcurrentTx; the charger charges anyway: the first transaction is closed and billed, the second
  billed from a new hold, and the charger asked to stop it.
- A customer's tag used without the app; a wallet short of the hold (stopped at once, billed).
"""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from tests.support.chargers import RawCharger
from tests.support.deployment import AUTH_KEY, deployment
from tests.support.processes import wait_until
from tests.test_api_charging import Http, answer_while, in_background

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.rabbitmq]

# 10 kWh x 0.40 + 0.25 = 4.25, + 10 % = 4.675 -> 4.68
TARIFF = {
    "energy_price": Decimal("0.4000"),
    "session_fee": Decimal("0.2500"),
    "tax_percent": Decimal("10.00"),
}


@pytest.fixture(scope="module")
def csms(tmp_path_factory, postgres_databases, rabbitmq_url):
    with deployment(
        "production",
        tmp_path_factory.mktemp("api-unplanned"),
        database_url=postgres_databases(),
        rabbitmq_url=rabbitmq_url,
        env={
            "CSMS_SECRET_KEY": "unplanned-test-secret-key-0123456789",
            "CSMS_BOOT_CONFIGURATION": "",
            "CSMS_CALL_TIMEOUT": "1",
            "CSMS_DISPATCH_INTERVAL": "0.2",
            "CSMS_UNPLANNED_HOLD": "15.00",
        },
        charge_points={f"UP-CP-{n}": AUTH_KEY for n in range(1, 5)},
        customers={
            "late@example.test": ("LATE-TAG", 1000),
            "busy@example.test": ("BUSY-TAG", 5000),
            "rfid@example.test": ("RFID-TAG", 3000),
            "poor@example.test": ("POOR-TAG", 300),
        },
        tariff=TARIFF,
    ) as running:
        yield running


def customer(csms, email: str) -> Http:
    return Http(csms.web.base_url).login(email)


def ledger(http: Http) -> list[tuple[str, str]]:
    return [(e["kind"], e["amount"]) for e in http("GET", "/api/user/wallet")[1]["ledger"]]


def settled(http: Http, entries: int) -> bool:
    wallet = http("GET", "/api/user/wallet")[1]
    return wallet["held"] == "0.00" and len(wallet["ledger"]) >= entries


def start(cp: RawCharger, tag: str, meter: int, at: str, connector: int = 1) -> list:
    payload = {"connectorId": connector, "idTag": tag, "meterStart": meter, "timestamp": at}
    return cp.call("StartTransaction", payload, unique_id=f"start-{tag}-{at}")


def meter(cp: RawCharger, transaction_id: int, wh: int, at: str, connector: int = 1) -> None:
    cp.call(
        "MeterValues",
        {
            "connectorId": connector,
            "transactionId": transaction_id,
            "meterValue": [{"timestamp": at, "sampledValue": [{"value": str(wh)}]}],
        },
    )


def stop(cp: RawCharger, transaction_id: int, wh: int, at: str) -> None:
    cp.call("StopTransaction", {"transactionId": transaction_id, "meterStop": wh, "timestamp": at})


def remote_stop_received(cp: RawCharger, transaction_id: int, limit: float = 15) -> bool:
    """Keep reading (Heartbeats) until the CSMS sent RemoteStopTransaction for the transaction."""
    wanted = ["RemoteStopTransaction", {"transactionId": transaction_id}]
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if any(call[2:] == wanted for call in cp.received_calls):
            return True
        cp.call("Heartbeat", {})
        time.sleep(0.1)
    return False


def test_a_start_after_the_rest_call_gave_up_is_billed(csms):
    http = customer(csms, "late@example.test")
    body = {"deviceId": "UP-CP-1", "connectorId": 1, "amount": "8.00"}
    with RawCharger(
        csms.ws_url, "UP-CP-1", AUTH_KEY, answers={"RemoteStartTransaction": {"status": "Accepted"}}
    ) as cp:
        cp.boot()
        thread, result = in_background(http, "POST", "/api/user/charging/start", body)
        thread.join(timeout=15)  # the charger reads nothing meanwhile: the call times out
        status, answer = result["value"]
        assert (status, answer["error"]["code"]) == (504, "charger_timeout")
        assert ledger(http) == [("refund", "8.00"), ("hold", "8.00"), ("topup", "10.00")]

        cp.call("Heartbeat", {})  # now the charger reads the RemoteStart, accepts it (late) and starts
        assert [c[2:] for c in cp.received_calls] == [
            ["RemoteStartTransaction", {"idTag": "LATE-TAG", "connectorId": 1}]
        ]
        reply = start(cp, "LATE-TAG", 0, "2026-10-01T08:00:00Z")
        transaction_id = reply[2]["transactionId"]
        assert reply == [
            3,
            "start-LATE-TAG-2026-10-01T08:00:00Z",
            {"transactionId": transaction_id, "idTagInfo": {"status": "Accepted"}},
        ]
        meter(cp, transaction_id, 5000, "2026-10-01T08:30:00Z")
        stop(cp, transaction_id, 10_000, "2026-10-01T09:00:00Z")

    assert wait_until(lambda: settled(http, 6), timeout=30), http("GET", "/api/user/wallet")[1]
    assert ledger(http) == [
        ("refund", "3.32"),
        ("capture", "4.68"),
        ("hold", "8.00"),
        ("refund", "8.00"),
        ("hold", "8.00"),
        ("topup", "10.00"),
    ]
    assert http("GET", "/api/user/wallet")[1]["available"] == "5.32"
    newest = http("GET", "/api/user/charging/sessions")[1]["items"][0]
    assert (newest["state"], newest["energyWh"], newest["cost"], newest["prepaid"]) == (
        "completed",
        10_000,
        "4.68",
        "8.00",
    )


def test_a_second_start_on_a_charging_connector(csms):
    http = customer(csms, "busy@example.test")
    body = {"deviceId": "UP-CP-2", "connectorId": 1, "amount": "20.00"}
    answers = {
        "RemoteStartTransaction": {"status": "Accepted"},
        "RemoteStopTransaction": {"status": "Accepted"},
    }
    with RawCharger(csms.ws_url, "UP-CP-2", AUTH_KEY, answers=answers) as cp:
        cp.boot()
        thread, result = in_background(http, "POST", "/api/user/charging/start", body)
        answer_while(cp, thread)
        assert result["value"][0] == 201, result
        first = start(cp, "BUSY-TAG", 0, "2026-10-01T08:00:00Z")[2]["transactionId"]
        meter(cp, first, 2000, "2026-10-01T08:20:00Z")

        reply = start(cp, "BUSY-TAG", 3000, "2026-10-01T08:30:00Z")
        second = reply[2]["transactionId"]
        assert second > first
        expected = [
            3,
            "start-BUSY-TAG-2026-10-01T08:30:00Z",
            {"transactionId": second, "idTagInfo": {"status": "ConcurrentTx"}},
        ]
        assert reply == expected
        assert start(cp, "BUSY-TAG", 3000, "2026-10-01T08:30:00Z") == expected  # resent: same id, same answer

        # The charger charges anyway: the CSMS asks it to stop, and bills what it delivered.
        meter(cp, second, 5000, "2026-10-01T08:45:00Z")
        assert remote_stop_received(cp, second)
        stop(cp, second, 8000, "2026-10-01T09:00:00Z")

    assert wait_until(lambda: settled(http, 7), timeout=30), http("GET", "/api/user/wallet")[1]
    # first: closed where the second began, 3 kWh: 1.20 + 0.25 = 1.45, + 10 % -> 1.60 (half-up)
    # second: 5 kWh: 2.00 + 0.25 = 2.25, + 10 % = 2.475 -> 2.48, from a new hold of CSMS_UNPLANNED_HOLD
    assert ledger(http) == [
        ("refund", "12.52"),
        ("capture", "2.48"),
        ("hold", "15.00"),
        ("refund", "18.40"),
        ("capture", "1.60"),
        ("hold", "20.00"),
        ("topup", "50.00"),
    ]
    assert http("GET", "/api/user/wallet")[1]["available"] == "45.92"
    rows = csms.rows(
        "SELECT id, state, energy_wh, stop_reason FROM transactions WHERE id IN (:a, :b) ORDER BY id",
        a=first,
        b=second,
    )
    assert [tuple(r) for r in rows] == [(first, "stopped", 3000, "Other"), (second, "stopped", 5000, "Local")]


def test_a_customer_tag_without_the_app_and_a_wallet_short_of_the_hold(csms):
    rfid, poor = customer(csms, "rfid@example.test"), customer(csms, "poor@example.test")
    answers = {"RemoteStopTransaction": {"status": "Accepted"}}
    with RawCharger(csms.ws_url, "UP-CP-3", AUTH_KEY, answers=answers) as cp:
        cp.boot()
        used = start(cp, "RFID-TAG", 0, "2026-10-01T08:00:00Z")[2]["transactionId"]
        short = start(cp, "POOR-TAG", 100, "2026-10-01T08:00:00Z", connector=2)
        assert short[2]["idTagInfo"] == {"status": "Accepted"}  # the wallet is not read on the hot path
        short = short[2]["transactionId"]
        assert remote_stop_received(cp, short)  # 3.00 cannot cover the 15.00 hold: stopped at once
        stop(cp, short, 2100, "2026-10-01T08:05:00Z")
        stop(cp, used, 4000, "2026-10-01T09:00:00Z")
        assert not any(
            c[3] == {"transactionId": used} for c in cp.received_calls if c[2] == "RemoteStopTransaction"
        )

    assert wait_until(lambda: settled(rfid, 4) and settled(poor, 4), timeout=30)
    # 4 kWh: 1.60 + 0.25 = 1.85, + 10 % = 2.035 -> 2.04; 2 kWh: 0.80 + 0.25 = 1.05, + 10 % = 1.155 -> 1.16
    assert ledger(rfid) == [("refund", "12.96"), ("capture", "2.04"), ("hold", "15.00"), ("topup", "30.00")]
    assert ledger(poor) == [("refund", "1.84"), ("capture", "1.16"), ("hold", "3.00"), ("topup", "3.00")]
