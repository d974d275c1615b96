"""A whole charging session through the real pipeline (production mode: web process, RabbitMQ,
`dramatiq csms.worker actors`, PostgreSQL): everything the charger said is stored, the session is billed once,
and a dashboard connected over Socket.IO hears about it from the worker process."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pika
import pytest
import socketio

from csms.extensions import db
from csms.models import SessionState
from csms.services import sessions, tokens
from tests.support.chargers import RawCharger
from tests.support.deployment import AUTH_KEY, deployment
from tests.support.fleet import run_fleet
from tests.support.processes import wait_until, worker_process

pytestmark = [pytest.mark.slow]

TARIFF = {
    "energy_price": Decimal("0.3000"),
    "time_price": Decimal("1.2000"),
    "session_fee": Decimal("0.5000"),
    "tax_percent": Decimal("20.00"),
}
SECRET = "test-secret-key-for-signing-tokens-0123"


@pytest.fixture
def production(request, tmp_path, sqlite_template):
    """Starts a CSMS in production mode, or in the mode the test is parametrized with."""
    mode = getattr(request, "param", "production")

    def start(**seed):
        services = {}
        if mode == "production":
            services = {
                "database_url": request.getfixturevalue("postgres_databases")(),
                "rabbitmq_url": request.getfixturevalue("rabbitmq_url"),
            }
        return deployment(
            mode,
            tmp_path,
            sqlite_template=sqlite_template,
            env={"CSMS_SECRET_KEY": SECRET, "CSMS_BOOT_CONFIGURATION": ""},
            tariff=TARIFF,
            **services,
            **seed,
        )

    return start


def as_utc(value) -> datetime:
    """A timestamp column as read back: aware on PostgreSQL, naive UTC text on SQLite."""
    value = datetime.fromisoformat(value) if isinstance(value, str) else value
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def open_session(csms, email: str, charge_point_id: str, prepaid_minor: int) -> int:
    """What the REST start does before RemoteStartTransaction: hold the money, open the session."""
    app = csms.app()
    with app.app_context():
        user_id = db.session.scalar(db.text("SELECT id FROM users WHERE email = :e"), {"e": email})
        session = sessions.open_session(user_id, charge_point_id, 1, prepaid_minor)
        session.state = SessionState.ACCEPTED  # the charger accepted RemoteStartTransaction
        db.session.commit()
        session_id = session.id
        db.session.remove()
        db.engine.dispose()
    return session_id


def wallet(csms, email: str) -> tuple[int, int]:
    row = csms.rows(
        "SELECT w.available_minor, w.held_minor FROM wallets w JOIN users u ON u.id = w.user_id"
        " WHERE u.email = :e",
        e=email,
    )[0]
    return row[0], row[1]


def session_state(csms, session_id: int) -> str:
    return csms.scalar("SELECT state FROM charging_sessions WHERE id = :id", id=session_id)


@pytest.mark.parametrize("production", ["embedded", "production"], indirect=True)
def test_a_full_session_is_stored_and_billed(production):
    with production(
        charge_points={"FLOW-1": AUTH_KEY}, customers={"ada@example.test": ("ADA-TAG", 5000)}
    ) as csms:
        session_id = open_session(csms, "ada@example.test", "FLOW-1", 2000)
        assert wallet(csms, "ada@example.test") == (3000, 2000)
        with RawCharger(csms.ws_url, "FLOW-1", AUTH_KEY) as charger:
            charger.boot()
            charger.call(
                "StatusNotification",
                {
                    "connectorId": 1,
                    "errorCode": "NoError",
                    "status": "Preparing",
                    "timestamp": "2026-08-01T09:59:00Z",
                },
            )
            start = charger.call(
                "StartTransaction",
                {
                    "connectorId": 1,
                    "idTag": "ADA-TAG",
                    "meterStart": 10_000,
                    "timestamp": "2026-08-01T10:00:00Z",
                },
            )
            tx = start[2]["transactionId"]
            assert start[2]["idTagInfo"] == {"status": "Accepted"}
            for minute, kwh in ((10, "11.5"), (20, "13.0"), (30, "14.5")):
                charger.call(
                    "MeterValues",
                    {
                        "connectorId": 1,
                        "transactionId": tx,
                        "meterValue": [
                            {
                                "timestamp": f"2026-08-01T10:{minute}:00Z",
                                "sampledValue": [
                                    {
                                        "value": kwh,
                                        "unit": "kWh",
                                        "measurand": "Energy.Active.Import.Register",
                                    },
                                    {"value": "9.0", "unit": "kW", "measurand": "Power.Active.Import"},
                                ],
                            }
                        ],
                    },
                )
            # an older status arriving late must not overwrite the newer one
            charger.call(
                "StatusNotification",
                {
                    "connectorId": 1,
                    "errorCode": "NoError",
                    "status": "Charging",
                    "timestamp": "2026-08-01T10:00:05Z",
                },
            )
            charger.call(
                "StatusNotification",
                {
                    "connectorId": 1,
                    "errorCode": "NoError",
                    "status": "Preparing",
                    "timestamp": "2026-08-01T09:59:30Z",
                },
            )
            assert wait_until(
                lambda: (
                    csms.scalar("SELECT energy_wh FROM charging_sessions WHERE id = :id", id=session_id)
                    == 4500
                ),
                timeout=20,
            )
            before_stop = time.time()
            charger.call(
                "StopTransaction",
                {
                    "transactionId": tx,
                    "idTag": "ADA-TAG",
                    "meterStop": 16_000,
                    "timestamp": "2026-08-01T10:30:00Z",
                    "reason": "EVDisconnected",
                },
            )
        assert wait_until(lambda: session_state(csms, session_id) == "completed", timeout=30)

        # last seen: when the CSMS received the last frame (written apart from the batches)
        def last_seen() -> float:
            seen = csms.scalar("SELECT last_seen_at FROM charge_points WHERE charge_point_id = 'FLOW-1'")
            return 0.0 if seen is None else as_utc(seen).timestamp()

        assert wait_until(lambda: last_seen() >= before_stop, timeout=10)

        # the transaction and its samples
        energy, stop_reason = csms.rows(
            "SELECT energy_wh, stop_reason FROM transactions WHERE id = :id", id=tx
        )[0]
        assert (energy, stop_reason) == (6000, "EVDisconnected")
        samples = csms.rows(
            "SELECT measurand, unit, value FROM meter_samples WHERE transaction_id = :id"
            " ORDER BY sampled_at, measurand",
            id=tx,
        )
        assert [(m, u, Decimal(v)) for m, u, v in samples] == [
            ("Energy.Active.Import.Register", "Wh", Decimal(11500)),
            ("Power.Active.Import", "W", Decimal(9000)),
            ("Energy.Active.Import.Register", "Wh", Decimal(13000)),
            ("Power.Active.Import", "W", Decimal(9000)),
            ("Energy.Active.Import.Register", "Wh", Decimal(14500)),
            ("Power.Active.Import", "W", Decimal(9000)),
        ]
        # the connector keeps the newest state
        assert (
            csms.scalar(
                "SELECT c.status FROM connectors c JOIN charge_points p ON p.id = c.charge_point_id"
                " WHERE p.charge_point_id = 'FLOW-1' AND c.connector_id = 1"
            )
            == "Charging"
        )
        # every frame, both directions: the charger's nine calls and their answers, and the CSMS's
        # ChangeConfiguration of MeterValueSampleInterval for the app session, and its answer
        assert csms.scalar("SELECT count(*) FROM ocpp_messages WHERE charge_point_id = 'FLOW-1'") == 2 * 9 + 2
        # cost: 6 kWh x 0.30 + 0.5 h x 1.20 + 0.50 fee = 2.90, + 20 % tax = 3.48
        assert csms.scalar("SELECT cost_minor FROM charging_sessions WHERE id = :id", id=session_id) == 348
        ledger = csms.rows(
            "SELECT kind, amount_minor FROM ledger_entries WHERE session_id = :id ORDER BY id", id=session_id
        )
        assert [tuple(r) for r in ledger] == [("hold", 2000), ("capture", 348), ("refund", 1652)]
        assert wallet(csms, "ada@example.test") == (5000 - 348, 0)


@pytest.mark.parametrize("production", ["embedded", "production"], indirect=True)
def test_the_prepaid_amount_running_out_stops_the_session(production):
    with production(
        charge_points={"FLOW-2": AUTH_KEY}, customers={"bob@example.test": ("BOB-TAG", 1000)}
    ) as csms:
        session_id = open_session(csms, "bob@example.test", "FLOW-2", 200)  # 2.00 buys ~4 kWh here
        with RawCharger(
            csms.ws_url, "FLOW-2", AUTH_KEY, answers={"RemoteStopTransaction": {"status": "Accepted"}}
        ) as charger:
            charger.boot()
            tx = charger.call(
                "StartTransaction",
                {"connectorId": 1, "idTag": "BOB-TAG", "meterStart": 0, "timestamp": "2026-08-02T10:00:00Z"},
            )[2]["transactionId"]
            charger.call(
                "MeterValues",
                {
                    "connectorId": 1,
                    "transactionId": tx,
                    "meterValue": [
                        {"timestamp": "2026-08-02T10:30:00Z", "sampledValue": [{"value": "6000"}]}
                    ],
                },
            )

            def remote_stop_received():
                charger.call("Heartbeat", {})
                return any(c[2] == "RemoteStopTransaction" for c in charger.received_calls)

            assert wait_until(remote_stop_received, timeout=20, interval=0.3)
            stop_call = next(c for c in charger.received_calls if c[2] == "RemoteStopTransaction")
            assert stop_call[3] == {"transactionId": tx}
            assert session_state(csms, session_id) == "stopping"
            charger.call(
                "StopTransaction",
                {
                    "transactionId": tx,
                    "meterStop": 6000,
                    "timestamp": "2026-08-02T10:31:00Z",
                    "reason": "Remote",
                },
            )
        assert wait_until(lambda: session_state(csms, session_id) == "completed", timeout=30)
        # the cost was more than prepaid: the capture is capped at the hold, the wallet never negative
        assert wallet(csms, "bob@example.test") == (800, 0)
        audit = csms.rows("SELECT action, outcome FROM command_audit WHERE charge_point_id = 'FLOW-2'")
        assert sorted(tuple(r) for r in audit) == [
            ("ChangeConfiguration", "answered"),  # MeterValueSampleInterval for the app session
            ("RemoteStopTransaction", "answered"),
        ]


def test_dashboards_hear_events_emitted_by_the_worker_process(production):
    with production(
        charge_points={"FLOW-3": AUTH_KEY}, operators={"ops@example.test": "password-123"}
    ) as csms:
        operator_id = csms.scalar("SELECT id FROM users WHERE role = 'operator'")
        token = tokens.issue(tokens.Identity(operator_id, "operator"), SECRET, timedelta(minutes=5))
        client = socketio.Client(reconnection=False)
        received = []
        client.on("charger:status:changed", lambda data: received.append(("status", data)))
        client.on("notification", lambda data: received.append(("notification", data)))
        client.connect(csms.web.base_url, auth={"token": token}, wait_timeout=10)
        try:
            with RawCharger(csms.ws_url, "FLOW-3", AUTH_KEY) as charger:
                charger.boot()
                charger.call(
                    "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available"}
                )
                assert wait_until(lambda: len(received) >= 2, timeout=20)
        finally:
            client.disconnect()
        status = next(data for kind, data in received if kind == "status")
        assert (status["chargePointId"], status["connectorId"], status["status"]) == (
            "FLOW-3",
            1,
            "Available",
        )
        assert any(
            kind == "notification"
            and data["type"] == "charger.status.changed"
            and data["deviceId"] == "FLOW-3"
            for kind, data in received
        )


def test_socketio_refuses_clients_without_a_valid_token(production):
    with production() as csms:
        for auth in (None, {"token": "forged"}):
            client = socketio.Client(reconnection=False)
            with pytest.raises(socketio.exceptions.ConnectionError):
                client.connect(csms.web.base_url, auth=auth, wait_timeout=5)


def test_a_killed_worker_loses_nothing_and_bills_once(production, tmp_path):
    customers = {f"kill{n}@example.test": (f"KILL-{n}", 1000) for n in range(30)}
    fleet = {f"KILL-CP-{n}": AUTH_KEY for n in range(30)}
    with production(charge_points=fleet, customers=customers) as csms:
        for n in range(30):
            open_session(csms, f"kill{n}@example.test", f"KILL-CP-{n}", 500)

        def script(charge_point_id: str):
            n = charge_point_id.rsplit("-", 1)[1]
            started = yield (
                "StartTransaction",
                {
                    "connectorId": 1,
                    "idTag": f"KILL-{n}",
                    "meterStart": 0,
                    "timestamp": "2026-08-03T10:00:00Z",
                },
            )
            tx = started[2]["transactionId"]
            for minute in range(1, 6):
                yield (
                    "MeterValues",
                    {
                        "connectorId": 1,
                        "transactionId": tx,
                        "meterValue": [
                            {
                                "timestamp": f"2026-08-03T10:{minute:02d}:00Z",
                                "sampledValue": [{"value": str(100 * minute)}],
                            }
                        ],
                    },
                )
            yield (
                "StopTransaction",
                {"transactionId": tx, "meterStop": 1000, "timestamp": "2026-08-03T10:10:00Z"},
            )

        answers = run_fleet(csms.ws_url, fleet, script)
        assert answers.failures == []
        csms.worker.kill_hard()  # mid-batch: the worker dies, its acks unsent
        with worker_process({**csms.env, "CSMS_RABBITMQ_URL": csms.env["CSMS_RABBITMQ_URL"]}, tmp_path):
            assert wait_until(
                lambda: csms.scalar("SELECT count(*) FROM charging_sessions WHERE state = 'completed'") == 30,
                timeout=90,
            ), csms.rows("SELECT state, count(*) FROM charging_sessions GROUP BY state")
            time.sleep(1)
        assert csms.scalar("SELECT count(*) FROM ledger_entries WHERE kind = 'capture'") == 30
        assert csms.scalar("SELECT count(*) FROM ledger_entries WHERE kind = 'refund'") == 30
        # the chargers' own calls (the CSMS's ChangeConfiguration answers come in too, as their
        # sessions' timing lets them)
        charger_calls = "SELECT count(*) FROM ocpp_messages WHERE direction = 'in' AND message_type = 2"
        assert csms.scalar(charger_calls) == 30 * 7
        # 1 kWh x 0.30 + 1/6 h x 1.20 + 0.50 = 1.00, + 20 % = 1.20 each
        assert {tuple(r) for r in csms.rows("SELECT available_minor, held_minor FROM wallets")} == {
            (1000 - 120, 0)
        }


def test_a_message_that_keeps_failing_ends_in_the_dead_letter_queue(production, rabbitmq_url):
    from actors.storage import record_exchanges

    def dead_letters() -> int:
        connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_url))
        try:
            return connection.channel().queue_declare("ocpp_messages.XQ", passive=True).method.message_count
        finally:
            connection.close()

    with production() as csms:
        app = csms.app()
        before = dead_letters()
        with app.app_context():
            poison = record_exchanges.send_with_options(
                args=([{"charge_point_id": "X", "frames": "not a list"}],),
                max_retries=2,
                min_backoff=10,
                max_backoff=50,
            )
        assert wait_until(lambda: dead_letters() == before + 1, timeout=30)
        assert wait_until(lambda: f"dead-lettered {poison.message_id}" in csms.worker.log(), timeout=10)
        assert "retries" in csms.worker.log()
