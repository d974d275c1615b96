"""Acknowledged means applied, in production mode (issue #14, findings 1, 2 and 7): a real charger
sends every value that used to be answered and then dead-lettered, through the web process,
RabbitMQ and a `dramatiq actors` worker to PostgreSQL; each is applied, the sessions settle, the
connector takes the next app session, the message log has every frame, and no dead-letter queue
grows. Frames nested 1,000 and 100,000 levels get a FormationViolation."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.support.chargers import RawCharger
from tests.support.deployment import AUTH_KEY, deployment
from tests.support.http import Http
from tests.support.processes import wait_until
from tests.test_api_charging import answer_while, in_background

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.rabbitmq]

CP = "BOUNDS-CP-1"
BIG = 2**63
NUL = "\x00"


@pytest.fixture(scope="module")
def csms(tmp_path_factory, postgres_databases, rabbitmq_url):
    with deployment(
        "production",
        tmp_path_factory.mktemp("ingest-bounds"),
        database_url=postgres_databases(),
        rabbitmq_url=rabbitmq_url,
        env={
            "CSMS_BOOT_CONFIGURATION": "",
            "CSMS_PAYMENT_PROVIDER": "development",
            "CSMS_MAX_FRAME_BYTES": "300000",  # room for a frame nested 100,000 levels
        },
        charge_points={CP: AUTH_KEY},
        tariff={"energy_price": Decimal("0.2500")},
    ) as running:
        yield running


@pytest.fixture(scope="module")
def customer(csms) -> Http:
    http = Http(csms.web.base_url)
    status, body = http(
        "POST", "/api/auth/register", {"email": "ada@example.test", "password": "password-123"}
    )
    assert status == 201, body
    http.token = body["access_token"]
    assert http("POST", "/api/user/wallet/topup", {"amount": "100.00"})[0] == 200
    return http


@pytest.fixture(scope="module")
def charger(csms):
    with RawCharger(
        csms.ws_url, CP, AUTH_KEY, answers={"RemoteStartTransaction": {"status": "Accepted"}}
    ) as cp:
        assert cp.boot()[2]["status"] == "Accepted"
        yield cp


def dead_letters(csms) -> dict:
    return csms.health()["dead_letters"]


def app_start(customer: Http, charger: RawCharger) -> tuple[int, str]:
    """A customer starts charging on connector 1 through the app (30.00 held); the charger accepts."""
    thread, result = in_background(
        customer, "POST", "/api/user/charging/start", {"deviceId": CP, "connectorId": 1, "amount": "30"}
    )
    answer_while(charger, thread)
    status, session = result["value"]
    assert status == 201, session  # not 409 connector_busy: the previous session freed the connector
    return session["id"], charger.received_calls[-1][3]["idTag"]


def stored(csms, unique_id: str) -> list[tuple]:
    return [
        tuple(row)
        for row in csms.rows(
            "SELECT direction, message_type FROM ocpp_messages WHERE unique_id = :u ORDER BY direction",
            u=unique_id,
        )
    ]


def assert_applied(csms, unique_id: str) -> None:
    assert wait_until(lambda: stored(csms, unique_id) == [("in", 2), ("out", 3)], timeout=30), stored(
        csms, unique_id
    )


STOPS = {
    "meterStop-bigint": ({"meterStop": BIG}, 2000),
    "transactionData-1e17": (
        {"transactionData": [{"timestamp": "2026-10-01T08:59:00Z", "sampledValue": [{"value": "1e17"}]}]},
        4000,
    ),
    "idTag-nul": ({"idTag": f"ADA{NUL}"}, 4000),
    "everything": (
        {
            "meterStop": BIG,
            "idTag": NUL,
            "transactionData": [
                {
                    "timestamp": "2026-10-01T08:59:00Z",
                    "sampledValue": [{"value": v} for v in ("1e17", "1e999999999", "NaN", "3500")],
                }
            ],
        },
        2500,
    ),
}


@pytest.mark.parametrize("case", STOPS)
def test_finding_1_an_answered_stop_transaction_always_settles(csms, customer, charger, case):
    overrides, energy_wh = STOPS[case]
    before = dead_letters(csms)
    session_id, id_tag = app_start(customer, charger)
    day = f"2026-10-{list(STOPS).index(case) + 1:02d}"  # a StartTransaction of its own (not a resend)
    start = {"connectorId": 1, "idTag": id_tag, "meterStart": 1000, "timestamp": f"{day}T08:00:00Z"}
    transaction_id = charger.call("StartTransaction", start)[2]["transactionId"]
    meter = {
        "connectorId": 1,
        "transactionId": transaction_id,
        "meterValue": [{"timestamp": f"{day}T08:30:00Z", "sampledValue": [{"value": "3000"}]}],
    }
    assert charger.call("MeterValues", meter)[0] == 3
    # The reading is applied before the Stop is sent: metering and transactions are separate queues,
    # and a Stop whose meterStop no meter reads is settled on the readings applied by then.
    reading = "SELECT meter_last_wh FROM transactions WHERE id = :t"
    assert wait_until(lambda: csms.scalar(reading, t=transaction_id) == 3000, timeout=30)
    stop = {
        "transactionId": transaction_id,
        "meterStop": 5000,
        "timestamp": f"{day}T09:00:00Z",
        **overrides,
    }
    reply = charger.call("StopTransaction", stop, unique_id=f"stop-{case}")
    assert reply[0] == 3, reply

    def settled():
        return customer("GET", f"/api/user/charging/sessions/{session_id}")[1]

    assert wait_until(lambda: settled()["state"] == "completed", timeout=30), settled()
    captured = (energy_wh * 25 + 500) // 1000  # 0.25 per kWh, rounded half up
    assert (settled()["energyWh"], settled()["cost"]) == (energy_wh, f"{Decimal(captured) / 100:.2f}")
    ledger = csms.rows(
        "SELECT kind, amount_minor FROM ledger_entries WHERE session_id = :s ORDER BY id", s=session_id
    )
    assert [tuple(row) for row in ledger] == [
        ("hold", 3000),
        ("capture", captured),
        ("refund", 3000 - captured),
    ]
    assert_applied(csms, f"stop-{case}")
    assert dead_letters(csms) == before
    assert "applied with adjustments" in csms.worker.log()


def test_finding_2_meter_values_status_data_transfer_authorize(csms, customer, charger):
    before = dead_letters(csms)
    session_id, id_tag = app_start(customer, charger)
    start = {"connectorId": 1, "idTag": id_tag, "meterStart": 0, "timestamp": "2026-10-20T08:00:00Z"}
    transaction_id = charger.call("StartTransaction", start)[2]["transactionId"]
    sampled = [{"value": v} for v in ("1e17", "1e999999999", "1200")] + [
        {"value": "231", "measurand": "Voltage", "phase": "L1"}
    ]
    calls = {
        "meter": (
            "MeterValues",
            {
                "connectorId": 1,
                "transactionId": transaction_id,
                "meterValue": [{"timestamp": "2026-10-20T08:10:00Z", "sampledValue": sampled}],
            },
        ),
        "status-big": (
            "StatusNotification",
            {"connectorId": BIG, "errorCode": "NoError", "status": "Available"},
        ),
        "status-nul": (
            "StatusNotification",
            {"connectorId": 2, "errorCode": "OtherError", "status": "Faulted", "info": f"fan{NUL}"},
        ),
        "data-nul": ("DataTransfer", {"vendorId": f"ACME{NUL}", "data": f"a{NUL}b"}),
        "authorize-nul": ("Authorize", {"idTag": f"TAG{NUL}"}),
    }
    for unique_id, (action, payload) in calls.items():
        reply = charger.call(action, payload, unique_id=unique_id)
        assert reply[0] == 3, reply
    for unique_id in calls:
        assert_applied(csms, unique_id)
    # the meter values kept what they could: the register and the voltage, not the absurd two
    assert wait_until(
        lambda: customer("GET", f"/api/user/charging/sessions/{session_id}")[1]["energyWh"] == 1200
    )
    samples = csms.rows(
        "SELECT value FROM meter_samples WHERE transaction_id = :t ORDER BY value", t=transaction_id
    )
    assert [row[0] for row in samples] == [Decimal("231"), Decimal("1200")]
    assert csms.rows(
        "SELECT status, info FROM connectors c JOIN charge_points p ON p.id = c.charge_point_id"
        " WHERE p.charge_point_id = :cp AND connector_id = 2",
        cp=CP,
    ) == [("Faulted", "fan\ufffd")]
    data = csms.scalar("SELECT payload FROM ocpp_messages WHERE unique_id = 'data-nul' AND direction = 'in'")
    assert data == {"vendorId": "ACME\ufffd", "data": "a\ufffdb"}
    stop = {"transactionId": transaction_id, "meterStop": 1200, "timestamp": "2026-10-20T09:00:00Z"}
    assert charger.call("StopTransaction", stop)[0] == 3
    assert wait_until(
        lambda: customer("GET", f"/api/user/charging/sessions/{session_id}")[1]["state"] == "completed"
    )
    assert "one by one" not in csms.worker.log()
    assert dead_letters(csms) == before


@pytest.mark.parametrize(
    "depth, description",
    [(1000, "payload nests deeper than 32 levels"), (100_000, "frame nests too deeply")],
)
def test_finding_7_a_deeply_nested_call_gets_a_formation_violation(csms, charger, depth, description):
    unique_id = f"deep-{depth}"
    nested = "[" * depth + "1" + "]" * depth
    charger.send(
        f'[2,"{unique_id}","BootNotification",{{"chargePointVendor":{nested},"chargePointModel":"m"}}]'
    )
    assert charger.recv() == [4, unique_id, "FormationViolation", description, {}]
    assert wait_until(lambda: len(stored(csms, unique_id)) == 2, timeout=30)
    logged = csms.scalar(
        "SELECT payload FROM ocpp_messages WHERE unique_id = :u AND direction = 'in'", u=unique_id
    )
    assert logged["invalidFrame"].startswith(f'[2,"{unique_id}","BootNotification",{{"chargePointVendor":[[[')
    assert f"{CP}: refused '{unique_id}': {description}" in csms.web.log()
    assert charger.call("Heartbeat", {})[0] == 3  # the connection carries on
