"""Queued commands reach their charger (csms.ocpp.command_delivery), in process on SQLite (embedded
mode, the app serving on a real port): once, in order, only when the charger is ready for them —
after an accepted BootNotification, or, for a charger back without booting, at its first message or
after `QUEUE_BOOT_WAIT` seconds of silence — and the CSMS's own calls go out at once to a charger
that is online."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select
from werkzeug.serving import make_server

from csms.extensions import db
from csms.models import QueuedCommand, RegistrationStatus
from csms.runtime import start_background
from csms.services import chargers, command_queue
from tests.support.chargers import RawCharger
from tests.support.deployment import AUTH_KEY
from tests.support.processes import free_port

ANSWERS = {
    "Reset": {"status": "Accepted"},
    "RemoteStartTransaction": {"status": "Accepted"},
    "RemoteStopTransaction": {"status": "Accepted"},
    "UnlockConnector": {"status": "Unlocked"},
}


@pytest.fixture
def serve(make_app):
    """`serve(**config)`: the app serving on a real port with its background work, and chargers
    CP-Q1 (Accepted) and CP-PENDING (Pending); returns (app, ws_url)."""
    stops = []

    def start(**config):
        settings = {"CALL_TIMEOUT": 2.0, "BOOT_CONFIGURATION": "", "DISPATCH_INTERVAL": 0.1}
        app = make_app(**{**settings, **config})
        with app.app_context():
            chargers.register("CP-Q1", AUTH_KEY)
            chargers.register("CP-PENDING", AUTH_KEY, status=RegistrationStatus.PENDING)
            db.session.remove()
        stop_background = start_background(app)
        server = make_server("127.0.0.1", free_port(), app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        stops.append(lambda: (server.shutdown(), stop_background()))
        return app, f"ws://127.0.0.1:{server.port}"

    yield start
    for stop in stops:
        stop()


def enqueue(app, charge_point_id: str, action: str, payload: dict, ttl_seconds: int = 3600) -> str:
    with app.app_context():
        command = command_queue.enqueue(charge_point_id, action, payload, ttl_seconds=ttl_seconds)
        db.session.commit()
        command_id = command.command_id
        db.session.remove()
    return command_id


def states(app, *command_ids: str) -> list[tuple]:
    with app.app_context():
        found = {
            c.command_id: (c.state, c.response, c.error)
            for c in db.session.scalars(
                select(QueuedCommand).where(QueuedCommand.command_id.in_(command_ids))
            )
        }
        db.session.remove()
    return [found[c] for c in command_ids]


def calls_within(charger: RawCharger, count: int, seconds: float) -> list[list]:
    """The CSMS-initiated calls the charger received (and answered) within `seconds`, stopping
    early once there are `count`: [action, payload] each."""
    deadline = time.monotonic() + seconds
    while len(charger.received_calls) < count and time.monotonic() < deadline:
        try:
            frame = charger.recv(timeout=min(0.1, max(deadline - time.monotonic(), 0.01)))
        except TimeoutError:
            continue
        raise AssertionError(f"unexpected frame {frame}")
    return [call[2:] for call in charger.received_calls]


def wait_for_states(app, command_ids, expected, seconds: float = 5) -> list[tuple]:
    deadline = time.monotonic() + seconds
    while (found := [s[0] for s in states(app, *command_ids)]) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def test_queued_commands_go_out_once_in_order_after_an_accepted_boot(serve):
    app, ws_url = serve(QUEUE_BOOT_WAIT=30)
    commands = [
        ("Reset", {"type": "Soft"}),
        ("RemoteStartTransaction", {"idTag": "TAG-1", "connectorId": 1}),
        ("UnlockConnector", {"connectorId": 1}),
    ]
    ids = [enqueue(app, "CP-Q1", action, payload) for action, payload in commands]
    with RawCharger(ws_url, "CP-Q1", AUTH_KEY, answers=ANSWERS) as charger:
        assert calls_within(charger, 1, 0.5) == []  # connected, not booted: nothing yet
        assert charger.boot()[2]["status"] == "Accepted"
        assert calls_within(charger, 3, 5) == [list(c) for c in commands]
        assert wait_for_states(app, ids, ["answered"] * 3) == ["answered"] * 3
        assert [s[1] for s in states(app, *ids)] == [ANSWERS[a] for a, _ in commands]
    with RawCharger(ws_url, "CP-Q1", AUTH_KEY, answers=ANSWERS) as again:
        again.boot()
        assert calls_within(again, 1, 0.5) == []  # sent once, never again


def test_the_boot_configuration_goes_before_the_queue(serve):
    app, ws_url = serve(BOOT_CONFIGURATION="MeterValueSampleInterval=30")
    enqueue(app, "CP-Q1", "Reset", {"type": "Hard"})
    with RawCharger(ws_url, "CP-Q1", AUTH_KEY, answers=ANSWERS) as charger:
        charger.boot()
        assert calls_within(charger, 2, 5) == [
            ["ChangeConfiguration", {"key": "MeterValueSampleInterval", "value": "30"}],
            ["Reset", {"type": "Hard"}],
        ]


def test_a_charger_back_without_booting_gets_its_queue_at_its_first_message(serve):
    app, ws_url = serve(QUEUE_BOOT_WAIT=30)
    command_id = enqueue(app, "CP-Q1", "Reset", {"type": "Soft"})
    with RawCharger(ws_url, "CP-Q1", AUTH_KEY, answers=ANSWERS) as charger:
        assert calls_within(charger, 1, 0.5) == []
        charger.call("Heartbeat", {})
        assert calls_within(charger, 1, 3) == [["Reset", {"type": "Soft"}]]
    assert wait_for_states(app, [command_id], ["answered"]) == ["answered"]


def test_a_silent_charger_back_without_booting_gets_its_queue_after_the_boot_wait(serve):
    app, ws_url = serve(QUEUE_BOOT_WAIT=1.0)
    enqueue(app, "CP-Q1", "Reset", {"type": "Soft"})
    with RawCharger(ws_url, "CP-Q1", AUTH_KEY, answers=ANSWERS) as charger:
        started = time.monotonic()
        assert calls_within(charger, 1, 0.7) == []
        assert calls_within(charger, 1, 3) == [["Reset", {"type": "Soft"}]]
        assert 0.9 <= time.monotonic() - started < 2.5


def test_a_charger_not_accepted_gets_nothing(serve):
    app, ws_url = serve(QUEUE_BOOT_WAIT=0.3)
    command_id = enqueue(app, "CP-PENDING", "Reset", {"type": "Soft"})
    with RawCharger(ws_url, "CP-PENDING", AUTH_KEY, answers=ANSWERS) as charger:
        assert charger.boot()[2]["status"] == "Pending"
        assert calls_within(charger, 1, 1.0) == []
    assert states(app, command_id)[0][0] == "queued"


def test_expired_and_cancelled_commands_never_go_out(serve):
    app, ws_url = serve()
    expiring = enqueue(app, "CP-Q1", "Reset", {"type": "Hard"}, ttl_seconds=1)
    cancelled = enqueue(app, "CP-Q1", "RemoteStopTransaction", {"transactionId": 3})
    kept = enqueue(app, "CP-Q1", "Reset", {"type": "Soft"})
    with app.app_context():
        command_queue.cancel(cancelled)
        db.session.remove()
    assert wait_for_states(app, [expiring], ["expired"], seconds=3) == ["expired"]  # the sweep
    with RawCharger(ws_url, "CP-Q1", AUTH_KEY, answers=ANSWERS) as charger:
        charger.boot()
        assert calls_within(charger, 2, 1.5) == [["Reset", {"type": "Soft"}]]
    assert [s[0] for s in states(app, expiring, cancelled, kept)] == ["expired", "cancelled", "answered"]


def test_a_charger_that_answers_with_an_error_fails_its_command_and_the_next_still_goes(serve):
    app, ws_url = serve()
    failing = enqueue(app, "CP-Q1", "GetLocalListVersion", {})
    after = enqueue(app, "CP-Q1", "Reset", {"type": "Soft"})
    answers = {**ANSWERS, "GetLocalListVersion": {"listVersion": "not a number"}}
    with RawCharger(ws_url, "CP-Q1", AUTH_KEY, answers=answers) as charger:
        charger.boot()
        assert [c[0] for c in calls_within(charger, 2, 5)] == ["GetLocalListVersion", "Reset"]
    assert wait_for_states(app, [failing, after], ["failed", "answered"]) == ["failed", "answered"]
    state, response, error = states(app, failing)[0]
    assert (state, response, error["code"]) == ("failed", None, "TypeConstraintViolation")


def test_the_csms_own_call_reaches_an_online_charger_at_once(serve):
    app, ws_url = serve(DISPATCH_INTERVAL=30)  # no sweep during the test: the announcement does it
    with RawCharger(ws_url, "CP-Q1", AUTH_KEY, answers=ANSWERS) as charger:
        charger.boot()
        started = time.monotonic()
        with app.app_context():
            command_queue.request(
                "session:9:remote-stop", "CP-Q1", "RemoteStopTransaction", {"transactionId": 9}, "x"
            )
            db.session.commit()
            db.session.remove()
        assert calls_within(charger, 1, 2) == [["RemoteStopTransaction", {"transactionId": 9}]]
        assert time.monotonic() - started < 1.0


def test_the_sweep_sends_what_no_announcement_told_of(serve):
    app, ws_url = serve(DISPATCH_INTERVAL=0.3)
    with RawCharger(ws_url, "CP-Q1", AUTH_KEY, answers=ANSWERS) as charger:
        charger.boot()
        time.sleep(0.3)  # the presence row is written
        with app.app_context():
            db.session.execute(
                insert(QueuedCommand).values(
                    command_id="silent-1",
                    charge_point_id="CP-Q1",
                    action="Reset",
                    payload={"type": "Soft"},
                    state="queued",
                    created_at=datetime.now(UTC),
                    expires_at=datetime.now(UTC) + timedelta(minutes=1),
                )
            )
            db.session.commit()
            db.session.remove()
        assert calls_within(charger, 1, 2) == [["Reset", {"type": "Soft"}]]
