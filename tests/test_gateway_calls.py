"""CSMS-initiated calls: `Gateway.call()` round-trips to the `ocpp` library's charge point over a real
WebSocket, one call at a time per charger, with clear errors for timeouts, offline chargers, invalid
payloads and CALLERRORs. The web app runs in this process (threaded server) so the test can call
the gateway directly, as the REST views do."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select
from werkzeug.serving import make_server

from csms.extensions import db
from csms.models import OcppMessage
from csms.ocpp.errors import OcppError
from csms.ocpp.session import CallFailed, CallTimeout, ChargerOffline
from csms.runtime import start_background
from csms.services import chargers
from tests.support.chargers import LibraryCharger
from tests.support.deployment import AUTH_KEY
from tests.support.processes import free_port, wait_until


@pytest.fixture
def live(make_app):
    """The app serving on a real port, with its background work running, and charger CP-CALL."""
    app = make_app(CALL_TIMEOUT=2.0, BOOT_CONFIGURATION="")
    with app.app_context():
        chargers.register("CP-CALL", AUTH_KEY)
        db.session.remove()
    stop_background = start_background(app)
    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield app, f"ws://127.0.0.1:{port}"
    finally:
        server.shutdown()
        stop_background()


@pytest.fixture
def charger(live):
    app, ws_url = live
    with LibraryCharger(ws_url, "CP-CALL", AUTH_KEY) as connected:
        assert wait_until(lambda: app.extensions["ocpp"].registry.get("CP-CALL") is not None, timeout=5)
        yield connected


def gateway(live):
    return live[0].extensions["ocpp"]


@pytest.mark.parametrize(
    ("action", "payload", "answer"),
    [
        ("RemoteStartTransaction", {"idTag": "TAG-1", "connectorId": 1}, {"status": "Accepted"}),
        ("RemoteStopTransaction", {"transactionId": 7}, {"status": "Accepted"}),
        ("ChangeConfiguration", {"key": "HeartbeatInterval", "value": "120"}, {"status": "Accepted"}),
        (
            "GetConfiguration",
            {"key": ["HeartbeatInterval", "NoSuchKey"]},
            {
                "configurationKey": [{"key": "HeartbeatInterval", "readonly": False, "value": "300"}],
                "unknownKey": ["NoSuchKey"],
            },
        ),
        ("Reset", {"type": "Soft"}, {"status": "Accepted"}),
        (
            "TriggerMessage",
            {"requestedMessage": "StatusNotification", "connectorId": 1},
            {"status": "Accepted"},
        ),
        ("ChangeAvailability", {"connectorId": 0, "type": "Inoperative"}, {"status": "Accepted"}),
    ],
)
def test_round_trip(live, charger, action, payload, answer):
    assert gateway(live).call("CP-CALL", action, payload) == answer


def test_calls_are_logged_both_ways_with_their_audit(live, charger):
    gateway(live).call("CP-CALL", "Reset", {"type": "Hard"}, requested_by=None)
    app = live[0]

    def logged():
        with app.app_context():
            rows = db.session.execute(
                select(OcppMessage.direction, OcppMessage.message_type, OcppMessage.action).where(
                    OcppMessage.action == "Reset"
                )
            ).all()
            db.session.remove()
            return sorted(map(tuple, rows))

    assert wait_until(lambda: logged() == [("in", 3, "Reset"), ("out", 2, "Reset")], timeout=10), logged()


def test_timeout_is_a_clear_error_and_the_late_answer_is_ignored(live, charger):
    charger.set_delay(1.5)
    started = time.monotonic()
    with pytest.raises(CallTimeout, match="did not answer Reset in time"):
        gateway(live).call("CP-CALL", "Reset", {"type": "Soft"}, timeout=0.3)
    assert time.monotonic() - started < 1.0
    charger.set_delay(0)
    time.sleep(1.5)  # the late answer arrives and matches nothing
    assert gateway(live).call("CP-CALL", "Reset", {"type": "Soft"}) == {"status": "Accepted"}
    assert gateway(live).registry.counters["unexpected_replies"] >= 1


def test_unknown_or_disconnected_charger_is_offline(live, charger):
    with pytest.raises(ChargerOffline):
        gateway(live).call("CP-NOWHERE", "Reset", {"type": "Soft"})
    charger.disconnect()
    assert wait_until(lambda: gateway(live).registry.get("CP-CALL") is None, timeout=5)
    with pytest.raises(ChargerOffline):
        gateway(live).call("CP-CALL", "Reset", {"type": "Soft"})


def test_disconnect_while_waiting_is_offline(live, charger):
    charger.set_delay(5)
    threading.Timer(0.3, charger.disconnect).start()
    with pytest.raises(ChargerOffline):
        gateway(live).call("CP-CALL", "Reset", {"type": "Soft"}, timeout=4)


@pytest.mark.parametrize(
    ("action", "payload", "code"),
    [
        ("Reset", {"type": "Sideways"}, "PropertyConstraintViolation"),
        ("Reset", {}, "OccurenceConstraintViolation"),
        ("ChangeConfiguration", {"key": "K", "value": 5}, "TypeConstraintViolation"),
        ("BootNotification", {}, "NotSupported"),  # a charger's action, not ours to send
    ],
)
def test_invalid_payloads_never_reach_the_charger(live, charger, action, payload, code):
    with pytest.raises(OcppError) as refused:
        gateway(live).call("CP-CALL", action, payload)
    assert refused.value.code == code
    # the charger still works and got nothing in between: the next call is answered normally
    assert gateway(live).call("CP-CALL", "Reset", {"type": "Soft"}) == {"status": "Accepted"}


def test_charger_call_error_is_reported(live, charger):
    with pytest.raises(CallFailed) as failed:
        gateway(live).call("CP-CALL", "ClearCache", {})  # the test charger implements no ClearCache
    assert failed.value.code == "NotImplemented"


def test_one_outstanding_call_per_charger(live, charger):
    charger.set_delay(0.3)
    results: list = []

    def ask(n: int) -> None:
        results.append(
            (n, gateway(live).call("CP-CALL", "ChangeConfiguration", {"key": f"K{n}", "value": str(n)}))
        )

    started = time.monotonic()
    threads = [threading.Thread(target=ask, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    elapsed = time.monotonic() - started
    assert sorted(n for n, _ in results) == [0, 1, 2]
    assert all(answer == {"status": "Accepted"} for _, answer in results)
    assert elapsed >= 0.85  # three answers of 0.3 s each, one after the other
    assert charger.charge_point.configuration["K2"] == "2"
