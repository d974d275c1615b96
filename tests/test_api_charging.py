"""The customer story and the operator commands over HTTP against two real web nodes (REST on one,
the charger on the other), a real charger and (in production mode) RabbitMQ, a `dramatiq
csms.worker actors` worker and PostgreSQL; issue #14's finding 3 (energy delivered but never
billed) reproduced the same way; and issue #18's prepaid rules (Authorize below CSMS_MIN_BALANCE, a
budget stopped before it is spent)."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest
import socketio

from tests.support.chargers import RawCharger
from tests.support.deployment import AUTH_KEY, deployment
from tests.support.http import Http
from tests.support.processes import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.rabbitmq]

TARIFF = {
    "energy_price": Decimal("0.4000"),
    "session_fee": Decimal("0.2500"),
    "tax_percent": Decimal("10.00"),
}
SECRET = "api-test-secret-key-0123456789-abcdef"


@pytest.fixture(scope="module")
def csms(tmp_path_factory, postgres_databases, rabbitmq_url):
    with deployment(
        "production",
        tmp_path_factory.mktemp("api-charging"),
        database_url=postgres_databases(),
        rabbitmq_url=rabbitmq_url,
        env={
            "CSMS_SECRET_KEY": SECRET,
            "CSMS_BOOT_CONFIGURATION": "",
            "CSMS_CALL_TIMEOUT": "2",
            "CSMS_PAYMENT_PROVIDER": "development",
            "CSMS_DISPATCH_INTERVAL": "0.2",
            "CSMS_MIN_BALANCE": "5.00",
            "CSMS_SESSION_SAMPLE_INTERVAL": "5",
        },
        charge_points={f"API-CP-{n}": AUTH_KEY for n in range(1, 13)},
        customers={"lowbalance@example.test": ("POOR-TAG", 200)},
        tariff=TARIFF,
        web_nodes=2,
    ) as running:
        operator = running.app()
        with operator.app_context():
            from csms.services import users

            users.create_user("operator@example.test", "password-123", role="operator")
        yield running


def rest_url(csms) -> str:
    """REST requests go to the second web node, chargers connect to the first (`csms.ws_url`): every
    story here crosses nodes, as behind a load balancer (issue #15)."""
    return csms.nodes[-1].base_url


def customer(csms, email: str, funds: str = "50.00") -> Http:
    http = Http(rest_url(csms))
    status, body = http("POST", "/api/auth/register", {"email": email, "password": "password-123"})
    assert status == 201, body
    http.token = body["access_token"]
    assert http("POST", "/api/user/wallet/topup", {"amount": funds})[0] == 200
    return http


def in_background(function, *args):
    result: dict = {}
    thread = threading.Thread(target=lambda: result.setdefault("value", function(*args)))
    thread.start()
    return thread, result


def answer_while(charger: RawCharger, thread: threading.Thread, limit: float = 15) -> None:
    """Keep the charger reading (and answering CSMS calls) until the REST call returned."""
    deadline = time.monotonic() + limit
    while thread.is_alive() and time.monotonic() < deadline:
        charger.call("Heartbeat", {})
        time.sleep(0.05)
    thread.join(timeout=1)


def test_customer_charges_and_pays(csms):
    http = customer(csms, "ada@example.test")
    with RawCharger(
        csms.ws_url,
        "API-CP-1",
        AUTH_KEY,
        answers={
            "RemoteStartTransaction": {"status": "Accepted"},
            "RemoteStopTransaction": {"status": "Accepted"},
        },
    ) as cp:
        cp.boot()
        thread, result = in_background(
            http,
            "POST",
            "/api/user/charging/start",
            {"deviceId": "API-CP-1", "connectorId": 1, "amount": "20"},
        )
        answer_while(cp, thread)
        status, session = result["value"]
        assert status == 201, session
        assert (session["state"], session["prepaid"], session["chargerResponse"]) == (
            "accepted",
            "20.00",
            {"status": "Accepted"},
        )
        remote_start = next(c for c in cp.received_calls if c[2] == "RemoteStartTransaction")
        id_tag = remote_start[3]["idTag"]
        assert remote_start[3]["connectorId"] == 1
        assert http("GET", "/api/user/wallet")[1]["held"] == "20.00"

        tx = cp.call(
            "StartTransaction",
            {"connectorId": 1, "idTag": id_tag, "meterStart": 1000, "timestamp": "2026-10-01T08:00:00Z"},
        )[2]["transactionId"]
        energies = []
        for minute, wh in ((10, 3000), (20, 6000)):
            cp.call(
                "MeterValues",
                {
                    "connectorId": 1,
                    "transactionId": tx,
                    "meterValue": [
                        {"timestamp": f"2026-10-01T08:{minute}:00Z", "sampledValue": [{"value": str(wh)}]}
                    ],
                },
            )
            assert wait_until(
                lambda w=wh: (
                    http("GET", f"/api/user/charging/sessions/{session['id']}")[1]["energyWh"] == w - 1000
                ),
                timeout=20,
            )
            energies.append(http("GET", f"/api/user/charging/sessions/{session['id']}")[1]["energyWh"])
        assert energies == [2000, 5000]  # live energy rising

        thread, result = in_background(http, "POST", "/api/user/charging/stop", {"sessionId": session["id"]})
        answer_while(cp, thread)
        status, stopped = result["value"]
        assert status == 200 and stopped["chargerResponse"] == {"status": "Accepted"}
        assert stopped["session"]["state"] == "stopping"
        cp.call(
            "StopTransaction",
            {
                "transactionId": tx,
                "idTag": id_tag,
                "meterStop": 7000,
                "timestamp": "2026-10-01T08:30:00Z",
                "reason": "Remote",
            },
        )

    assert wait_until(
        lambda: http("GET", f"/api/user/charging/sessions/{session['id']}")[1]["state"] == "completed",
        timeout=30,
    )
    final = http("GET", f"/api/user/charging/sessions/{session['id']}")[1]
    # 6 kWh x 0.40 + 0.25 fee = 2.65, + 10 % = 2.915 -> 2.92 (half-up, once, at the end)
    assert (final["energyWh"], final["cost"]) == (6000, "2.92")
    wallet = http("GET", "/api/user/wallet")[1]
    assert (wallet["available"], wallet["held"]) == ("47.08", "0.00")
    assert [(e["kind"], e["amount"]) for e in wallet["ledger"]][:3] == [
        ("refund", "17.08"),
        ("capture", "2.92"),
        ("hold", "20.00"),
    ]
    listed = http("GET", "/api/user/charging/sessions")[1]
    assert listed["total"] == 1 and listed["items"][0]["id"] == session["id"]


@pytest.mark.parametrize(
    ("case", "charger_answer", "status", "code"),
    [
        ("rejected", {"status": "Rejected"}, 409, "charger_rejected"),
        ("timeout", None, 504, "charger_timeout"),
        ("offline", "offline", 409, "charger_offline"),
    ],
)
def test_failed_start_releases_the_hold(csms, case, charger_answer, status, code):
    http = customer(csms, f"{case}@example.test", funds="10.00")
    cp_id = {"rejected": "API-CP-2", "timeout": "API-CP-3", "offline": "API-CP-4"}[case]
    body = {"deviceId": cp_id, "connectorId": 1, "amount": "8.00"}
    if charger_answer == "offline":
        answer = http("POST", "/api/user/charging/start", body)
    else:
        with RawCharger(
            csms.ws_url, cp_id, AUTH_KEY, answers={"RemoteStartTransaction": charger_answer or {}}
        ) as cp:
            cp.boot()
            thread, result = in_background(http, "POST", "/api/user/charging/start", body)
            if charger_answer is not None:
                answer_while(cp, thread)
            else:
                thread.join(timeout=10)  # the charger reads nothing: the call times out
            answer = result["value"]
    assert answer[0] == status, answer
    assert answer[1]["error"]["code"] == code
    wallet = http("GET", "/api/user/wallet")[1]
    assert (wallet["available"], wallet["held"]) == ("10.00", "0.00")
    assert [e["kind"] for e in wallet["ledger"]][:2] == ["refund", "hold"]
    session = http("GET", "/api/user/charging/sessions")[1]["items"][0]
    assert session["state"] in ("rejected", "failed") and session["failureReason"]


def test_start_refusals_without_the_charger(csms):
    http = customer(csms, "poor@example.test", funds="1.00")
    cases = [
        ({"deviceId": "API-CP-5", "connectorId": 1, "amount": "5"}, 409, "insufficient_funds"),
        ({"deviceId": "NOPE", "connectorId": 1, "amount": "0.5"}, 404, "charge_point_not_found"),
        ({"deviceId": "API-CP-5", "connectorId": 9, "amount": "0.5"}, 404, "connector_not_found"),
        ({"deviceId": "API-CP-5", "connectorId": 1, "amount": "0.001"}, 422, "validation_error"),
        ({"deviceId": "API-CP-5", "amount": "0.5"}, 422, "validation_error"),
    ]
    for body, status, code in cases:
        answer = http("POST", "/api/user/charging/start", body)
        assert (answer[0], answer[1]["error"]["code"]) == (status, code), (body, answer)
    assert http("GET", "/api/user/wallet")[1]["available"] == "1.00"


@pytest.mark.parametrize(
    ("path", "body", "action", "sent"),
    [
        (
            "/api/charger/remote-start",
            {"idTag": "T1", "connectorId": 2},
            "RemoteStartTransaction",
            {"idTag": "T1", "connectorId": 2},
        ),
        ("/api/charger/remote-stop", {"transactionId": 77}, "RemoteStopTransaction", {"transactionId": 77}),
        (
            "/api/charger/change-configuration",
            {"key": "HeartbeatInterval", "value": "60"},
            "ChangeConfiguration",
            {"key": "HeartbeatInterval", "value": "60"},
        ),
        ("/api/charger/reset", {"type": "Hard"}, "Reset", {"type": "Hard"}),
        (
            "/api/charger/command",
            {"action": "UnlockConnector", "payload": {"connectorId": 1}},
            "UnlockConnector",
            {"connectorId": 1},
        ),
        ("/api/charger/command", {"action": "GetLocalListVersion", "payload": {}}, "GetLocalListVersion", {}),
    ],
)
def test_operator_commands_round_trip_and_are_audited(csms, path, body, action, sent):
    http = Http(rest_url(csms)).login("operator@example.test")
    answers = {
        action: {"GetLocalListVersion": {"listVersion": 3}, "UnlockConnector": {"status": "Unlocked"}}.get(
            action, {"status": "Accepted"}
        )
    }
    with RawCharger(csms.ws_url, "API-CP-6", AUTH_KEY, answers=answers) as cp:
        cp.boot()
        thread, result = in_background(http, "POST", path, {"deviceId": "API-CP-6", **body})
        answer_while(cp, thread)
    status, reply = result["value"]
    assert status == 200, reply
    assert reply == {"deviceId": "API-CP-6", "action": action, "response": answers[action]}
    assert [c[2:] for c in cp.received_calls] == [[action, sent]]

    def audited():
        items = http("GET", "/api/charger/commands?chargePointId=API-CP-6")[1]["items"]
        return items and items[0]["action"] == action and items[0]["outcome"] == "answered"

    assert wait_until(audited, timeout=20)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/charger/reset", {"type": "Sideways"}),
        ("/api/charger/command", {"action": "Reset", "payload": {}}),
        (
            "/api/charger/command",
            {"action": "ChangeAvailability", "payload": {"connectorId": 1, "type": "Maybe"}},
        ),
        ("/api/charger/command", {"action": "BootNotification", "payload": {}}),
        ("/api/charger/change-configuration", {"key": "K"}),
    ],
)
def test_invalid_command_payloads_never_reach_the_charger(csms, path, body):
    http = Http(rest_url(csms)).login("operator@example.test")
    with RawCharger(csms.ws_url, "API-CP-7", AUTH_KEY) as cp:
        cp.boot()
        status, reply = http("POST", path, {"deviceId": "API-CP-7", **body})
        cp.call("Heartbeat", {})  # anything the CSMS had sent would be read (and recorded) here
    assert status == 422, reply
    assert cp.received_calls == []


def test_command_errors(csms):
    http = Http(rest_url(csms)).login("operator@example.test")
    assert http("POST", "/api/charger/reset", {"deviceId": "UNKNOWN"})[0] == 404
    assert (
        http("POST", "/api/charger/reset", {"deviceId": "API-CP-5"})[1]["error"]["code"] == "charger_offline"
    )


def test_customers_see_only_their_own(csms):
    ada = Http(rest_url(csms)).login("ada@example.test")
    eve = customer(csms, "eve@example.test")
    ada_session = ada("GET", "/api/user/charging/sessions")[1]["items"][0]["id"]
    assert eve("GET", f"/api/user/charging/sessions/{ada_session}")[0] == 404
    assert eve("GET", "/api/user/charging/sessions")[1]["total"] == 0
    assert eve("POST", "/api/user/charging/stop", {"sessionId": ada_session})[0] == 404
    assert eve("GET", "/api/user/wallet")[1]["available"] == "50.00"

    # and over Socket.IO: Eve hears nothing of Ada's session; an operator hears everything
    heard = {"eve": [], "operator": []}
    clients = []
    for name, token in (
        ("eve", eve.token),
        ("operator", Http(rest_url(csms)).login("operator@example.test").token),
    ):
        client = socketio.Client(reconnection=False)
        client.on("notification", lambda data, n=name: heard[n].append(data))
        client.connect(rest_url(csms), auth={"token": token}, wait_timeout=10)
        clients.append(client)
    try:
        second_session_of(csms, ada)
        operator = Http(rest_url(csms)).login("operator@example.test")
        assert operator("POST", "/api/cms/stations", {"name": "Live"})[0] == 201
        assert wait_until(
            lambda: any(e["type"] == "cms.station.created" for e in heard["operator"]), timeout=30
        )
        assert wait_until(lambda: any(e["type"] == "charging.stopped" for e in heard["operator"]), timeout=30)
        time.sleep(1)
    finally:
        for client in clients:
            client.disconnect()
    assert heard["eve"] == []
    assert {e["type"] for e in heard["operator"]} >= {
        "charging.started",
        "meter.values.updated",
        "charging.stopped",
        "cms.station.created",
    }


def second_session_of(csms, ada: Http) -> None:
    """A short second session of Ada's (helper for the isolation test)."""
    with RawCharger(
        csms.ws_url, "API-CP-1", AUTH_KEY, answers={"RemoteStartTransaction": {"status": "Accepted"}}
    ) as cp:
        cp.boot()
        thread, result = in_background(
            ada, "POST", "/api/user/charging/start", {"deviceId": "API-CP-1", "connectorId": 1, "amount": "5"}
        )
        answer_while(cp, thread)
        assert result["value"][0] == 201, result
        id_tag = next(c for c in cp.received_calls if c[2] == "RemoteStartTransaction")[3]["idTag"]
        tx = cp.call(
            "StartTransaction",
            {"connectorId": 1, "idTag": id_tag, "meterStart": 0, "timestamp": "2026-10-02T08:00:00Z"},
        )[2]["transactionId"]
        cp.call(
            "MeterValues",
            {
                "connectorId": 1,
                "transactionId": tx,
                "meterValue": [{"timestamp": "2026-10-02T08:05:00Z", "sampledValue": [{"value": "500"}]}],
            },
        )
        cp.call(
            "StopTransaction", {"transactionId": tx, "meterStop": 1000, "timestamp": "2026-10-02T08:10:00Z"}
        )


# Issue #14, finding 3: energy delivered but never billed (policy: README, customer section).


def ledger(http: Http) -> list[tuple[str, str]]:
    return [(e["kind"], e["amount"]) for e in http("GET", "/api/user/wallet")[1]["ledger"]]


def settled(http: Http, entries: int) -> bool:
    wallet = http("GET", "/api/user/wallet")[1]
    return wallet["held"] == "0.00" and len(wallet["ledger"]) >= entries


def start_with(cp: RawCharger, tag: str, meter: int, at: str, connector: int = 1) -> list:
    payload = {"connectorId": connector, "idTag": tag, "meterStart": meter, "timestamp": at}
    return cp.call("StartTransaction", payload, unique_id=f"start-{connector}-{at}")


def meter_reading(cp: RawCharger, transaction_id: int, wh: int, at: str) -> None:
    cp.call(
        "MeterValues",
        {
            "connectorId": 1,
            "transactionId": transaction_id,
            "meterValue": [{"timestamp": at, "sampledValue": [{"value": str(wh)}]}],
        },
    )


def stop_at(cp: RawCharger, transaction_id: int, wh: int, at: str) -> None:
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
    """The charger accepts RemoteStart after the REST call's 504 (hold refunded), starts with the
    app's idTag and charges 10 kWh: the energy is captured from a new hold of the same amount."""
    http = customer(csms, "late@example.test", funds="10.00")
    body = {"deviceId": "API-CP-8", "connectorId": 1, "amount": "8.00"}
    answers = {"RemoteStartTransaction": {"status": "Accepted"}}
    with RawCharger(csms.ws_url, "API-CP-8", AUTH_KEY, answers=answers) as cp:
        cp.boot()
        thread, result = in_background(http, "POST", "/api/user/charging/start", body)
        thread.join(timeout=15)  # the charger reads nothing meanwhile: the call times out
        status, answer = result["value"]
        assert (status, answer["error"]["code"]) == (504, "charger_timeout")
        assert ledger(http) == [("refund", "8.00"), ("hold", "8.00"), ("topup", "10.00")]

        cp.call("Heartbeat", {})  # now the charger reads the RemoteStart, accepts it (late) and starts
        [[_, _, action, remote_start]] = cp.received_calls
        assert (action, remote_start["connectorId"]) == ("RemoteStartTransaction", 1)
        reply = start_with(cp, remote_start["idTag"], 0, "2026-10-01T08:00:00Z")
        transaction_id = reply[2]["transactionId"]
        assert reply == [
            3,
            "start-1-2026-10-01T08:00:00Z",
            {"transactionId": transaction_id, "idTagInfo": {"status": "Accepted"}},
        ]
        meter_reading(cp, transaction_id, 5000, "2026-10-01T08:30:00Z")
        stop_at(cp, transaction_id, 10_000, "2026-10-01T09:00:00Z")

    assert wait_until(lambda: settled(http, 6), timeout=30), http("GET", "/api/user/wallet")[1]
    # 10 kWh x 0.40 + 0.25 = 4.25, + 10 % = 4.675 -> 4.68
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
    """A second StartTransaction with the same app tag on the connector already charging is answered
    ConcurrentTx; the charger charges anyway: the first transaction is closed where the second began
    and billed, the second billed from a new hold (CSMS_UNPLANNED_HOLD), and the charger asked to
    stop it."""
    http = customer(csms, "busy@example.test", funds="50.00")
    body = {"deviceId": "API-CP-9", "connectorId": 1, "amount": "20.00"}
    answers = {
        "RemoteStartTransaction": {"status": "Accepted"},
        "RemoteStopTransaction": {"status": "Accepted"},
    }
    with RawCharger(csms.ws_url, "API-CP-9", AUTH_KEY, answers=answers) as cp:
        cp.boot()
        thread, result = in_background(http, "POST", "/api/user/charging/start", body)
        answer_while(cp, thread)
        assert result["value"][0] == 201, result
        tag = cp.received_calls[0][3]["idTag"]
        first = start_with(cp, tag, 0, "2026-10-01T08:00:00Z")[2]["transactionId"]
        meter_reading(cp, first, 2000, "2026-10-01T08:20:00Z")

        reply = start_with(cp, tag, 3000, "2026-10-01T08:30:00Z")
        second = reply[2]["transactionId"]
        expected = [
            3,
            "start-1-2026-10-01T08:30:00Z",
            {"transactionId": second, "idTagInfo": {"status": "ConcurrentTx"}},
        ]
        assert reply == expected and second > first
        assert start_with(cp, tag, 3000, "2026-10-01T08:30:00Z") == expected  # resent: same id and answer

        meter_reading(cp, second, 5000, "2026-10-01T08:45:00Z")  # it charges anyway
        assert remote_stop_received(cp, second)
        stop_at(cp, second, 8000, "2026-10-01T09:00:00Z")

    assert wait_until(lambda: settled(http, 7), timeout=30), http("GET", "/api/user/wallet")[1]
    # first, closed at 3 kWh: 1.20 + 0.25 = 1.45, + 10 % = 1.595 -> 1.60
    # second, 5 kWh: 2.00 + 0.25 = 2.25, + 10 % = 2.475 -> 2.48
    assert ledger(http) == [
        ("refund", "17.52"),
        ("capture", "2.48"),
        ("hold", "20.00"),
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
    """A customer's tag used at a charger with no app session is billed from a new hold; a wallet
    that cannot cover the hold gives what it has and the charger is asked to stop at once."""
    with csms.app().app_context():
        from csms.services import users

        users.create_user("rfid@example.test", "password-123", id_tag="RFID-TAG")
        users.create_user("short@example.test", "password-123", id_tag="SHORT-TAG")
    rfid, poor = (
        Http(rest_url(csms)).login("rfid@example.test"),
        Http(rest_url(csms)).login("short@example.test"),
    )
    assert rfid("POST", "/api/user/wallet/topup", {"amount": "30.00"})[0] == 200
    assert poor("POST", "/api/user/wallet/topup", {"amount": "3.00"})[0] == 200
    answers = {"RemoteStopTransaction": {"status": "Accepted"}}
    with RawCharger(csms.ws_url, "API-CP-10", AUTH_KEY, answers=answers) as cp:
        cp.boot()
        used = start_with(cp, "RFID-TAG", 0, "2026-10-01T08:00:00Z")[2]["transactionId"]
        short = start_with(cp, "SHORT-TAG", 100, "2026-10-01T08:00:00Z", connector=2)
        assert short[2]["idTagInfo"] == {"status": "Accepted"}  # the wallet is not read on the hot path
        short = short[2]["transactionId"]
        assert remote_stop_received(cp, short)  # 3.00 cannot cover the 20.00 hold: stopped at once
        stop_at(cp, short, 2100, "2026-10-01T08:05:00Z")
        stop_at(cp, used, 4000, "2026-10-01T09:00:00Z")
        assert [c[3] for c in cp.received_calls] == [{"transactionId": short}]

    assert wait_until(lambda: settled(rfid, 4) and settled(poor, 4), timeout=30)
    # 4 kWh: 1.60 + 0.25 = 1.85, + 10 % = 2.035 -> 2.04; 2 kWh: 0.80 + 0.25 = 1.05, + 10 % = 1.155 -> 1.16
    assert ledger(rfid) == [("refund", "17.96"), ("capture", "2.04"), ("hold", "20.00"), ("topup", "30.00")]
    assert ledger(poor) == [("refund", "1.84"), ("capture", "1.16"), ("hold", "3.00"), ("topup", "3.00")]


def authorize(cp: RawCharger, tag: str) -> str:
    return cp.call("Authorize", {"idTag": tag})[2]["idTagInfo"]["status"]


def test_a_prepaid_owner_below_the_minimum_is_refused_at_authorize_until_topped_up(csms):
    """2.00 is below CSMS_MIN_BALANCE (5.00): Blocked; topped up on the other node, Accepted."""
    with RawCharger(csms.ws_url, "API-CP-11", AUTH_KEY) as cp:
        cp.boot()
        assert [authorize(cp, tag) for tag in ("POOR-TAG", "NO-SUCH-TAG")] == ["Blocked", "Invalid"]
        poor = Http(rest_url(csms)).login("lowbalance@example.test")
        assert poor("POST", "/api/user/wallet/topup", {"amount": "3.00"})[0] == 200
        assert wait_until(lambda: authorize(cp, "POOR-TAG") == "Accepted", timeout=10)


def test_an_app_session_is_stopped_before_its_budget_and_its_overrun_reported(csms):
    """3.00 at 11 kW costs 11 x 0.40 x 1.1 = 4.84 an hour. The session's start sets the charger's
    MeterValueSampleInterval; at 10:33:30 (2.98 spent) the 0.02 left last 15 s, within the 30 s
    margin, so the stop is asked then; the charger still delivers until 10:36 (3.18): the hold pays
    3.00, and 0.18 (373 Wh) are reported unbilled."""
    http = customer(csms, "budget@example.test")
    answers = {
        "RemoteStartTransaction": {"status": "Accepted"},
        "RemoteStopTransaction": {"status": "Accepted"},
    }
    with RawCharger(csms.ws_url, "API-CP-12", AUTH_KEY, answers=answers) as cp:
        cp.boot()
        body = {"deviceId": "API-CP-12", "connectorId": 1, "amount": "3.00"}
        thread, result = in_background(http, "POST", "/api/user/charging/start", body)
        answer_while(cp, thread)
        status, session = result["value"]
        assert status == 201, session
        tag = cp.received_calls[0][3]["idTag"]
        transaction_id = start_with(cp, tag, 1000, "2026-10-01T10:00:00Z")[2]["transactionId"]
        interval = ["ChangeConfiguration", {"key": "MeterValueSampleInterval", "value": "5"}]
        assert wait_until(lambda: cp.call("Heartbeat", {}) and interval in [c[2:] for c in cp.received_calls])

        def reading(at: str, wh: int) -> None:
            sampled = [
                {"value": str(wh), "unit": "Wh"},
                {"value": "11000", "unit": "W", "measurand": "Power.Active.Import"},
            ]
            values = [{"timestamp": f"2026-10-01T{at}Z", "sampledValue": sampled}]
            cp.call("MeterValues", {"connectorId": 1, "transactionId": transaction_id, "meterValue": values})

        reading("10:10:00", 1000 + 1833)  # 1.08 spent: 1,428 s left
        reading("10:33:30", 1000 + 6142)  # 2.98 spent: 15 s left
        assert remote_stop_received(cp, transaction_id, limit=30)
        stop_at(cp, transaction_id, 1000 + 6600, "2026-10-01T10:36:00Z")

    path = f"/api/user/charging/sessions/{session['id']}"
    assert wait_until(lambda: http("GET", path)[1]["state"] == "completed", timeout=30)
    billed = http("GET", path)[1]
    assert (billed["cost"], billed["unbilled"], billed["unbilledWh"]) == ("3.00", "0.18", 373)
    assert billed["breakdown"] == {
        "energy": "2.64",
        "time": "0.00",
        "sessionFee": "0.25",
        "tax": "0.29",
        "total": "3.18",
    }
    assert ledger(http)[:2] == [("refund", "0.00"), ("capture", "3.00")]
