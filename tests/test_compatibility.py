"""Clients of the replaced Node system, against a real deployment (web process, `dramatiq csms.worker
actors`, RabbitMQ, PostgreSQL): its dashboards' Socket.IO `notification` in its shape for a whole
charging session and for a dead-lettered message, and its chargers by their security profile over a
real WebSocket (0 without credentials, 1 with, 2 only over TLS, here ended by a trusted proxy)."""

from __future__ import annotations

import json
import re
import threading
from decimal import Decimal

import pika
import pytest
import socketio
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from csms.pipeline import addresses
from tests.support.chargers import RawCharger, basic_auth
from tests.support.deployment import AUTH_KEY, deployment
from tests.support.http import Http
from tests.support.processes import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.rabbitmq]

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
SEED_SHAPE = {"type", "chargerId", "deviceId", "data", "timestamp"}
CHARGERS = ("COMPAT-1", "COMPAT-DLQ", "LEGACY-0", "PLAIN-1", "SECURE-2")


@pytest.fixture(scope="module")
def csms(tmp_path_factory, postgres_databases, rabbitmq_url):
    with deployment(
        "production",
        tmp_path_factory.mktemp("compatibility"),
        database_url=postgres_databases(),
        rabbitmq_url=rabbitmq_url,
        env={"CSMS_BOOT_CONFIGURATION": "", "CSMS_TRUSTED_PROXIES": "127.0.0.1"},
        charge_points=dict.fromkeys(CHARGERS, AUTH_KEY),
        customers={"ada@example.test": ("ADA-TAG", 5000)},
        tariff={"energy_price": Decimal("0.4000")},
        operators={"op@example.test": "password-123"},
    ) as running:
        yield running


@pytest.fixture(scope="module")
def operator(csms) -> Http:
    return Http(csms.web.base_url).login("op@example.test")


class Listener:
    """A Socket.IO client of the replaced system's dashboards: it hears `notification` (and, to
    compare, the named events)."""

    NAMED = (
        "charging:started",
        "charging:stopped",
        "charger:status:changed",
        "meter:values",
        "error:occurred",
    )

    def __init__(self, url: str, token: str):
        self.notifications: list[dict] = []
        self.named: dict[str, list[dict]] = {name: [] for name in self.NAMED}
        self.lock = threading.Lock()
        self.client = socketio.Client(reconnection=False)
        self.client.on("notification", self._heard)
        for name in self.NAMED:
            self.client.on(name, lambda data, name=name: self.named[name].append(data))
        self.client.connect(url, auth={"token": token}, wait_timeout=10)

    def _heard(self, data: dict) -> None:
        with self.lock:
            self.notifications.append(data)

    def of(self, type_: str, device: str) -> list[dict]:
        with self.lock:
            return [n for n in self.notifications if n["type"] == type_ and n["deviceId"] == device]


@pytest.fixture
def dashboard(csms, operator):
    listener = Listener(csms.web.base_url, operator.token)
    yield listener
    listener.client.disconnect()


def pk_of(csms, charge_point_id: str) -> int:
    return csms.scalar("SELECT id FROM charge_points WHERE charge_point_id = :cp", cp=charge_point_id)


def test_a_whole_session_is_heard_as_seed_notifications(csms, dashboard):
    ada = Listener(csms.web.base_url, Http(csms.web.base_url).login("ada@example.test").token)
    try:
        with RawCharger(csms.ws_url, "COMPAT-1", AUTH_KEY) as cp:
            cp.boot()
            cp.call("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Preparing"})
            # applied before the fault below, which would otherwise supersede it if it came first
            assert wait_until(lambda: dashboard.of("charger.status.changed", "COMPAT-1"), timeout=20)
            start = {
                "connectorId": 1,
                "idTag": "ADA-TAG",
                "meterStart": 0,
                "timestamp": "2026-12-01T08:00:00Z",
            }
            tx = cp.call("StartTransaction", start)[2]["transactionId"]
            cp.call(
                "MeterValues",
                {
                    "connectorId": 1,
                    "transactionId": tx,
                    "meterValue": [{"timestamp": "2026-12-01T08:05:00Z", "sampledValue": [{"value": "500"}]}],
                },
            )
            cp.call(
                "StatusNotification",
                {"connectorId": 1, "errorCode": "GroundFailure", "status": "Faulted", "info": "RCD tripped"},
            )
            cp.call(
                "StopTransaction",
                {"transactionId": tx, "meterStop": 1000, "timestamp": "2026-12-01T08:10:00Z"},
            )
        kinds = (
            "charger.status.changed",
            "charging.started",
            "meter.values.updated",
            "error.occurred",
            "charging.stopped",
        )
        assert wait_until(
            lambda: all(dashboard.of(kind, "COMPAT-1") for kind in kinds),
            timeout=30,
        )
        assert wait_until(lambda: ada.of("charging.stopped", "COMPAT-1"), timeout=10)
    finally:
        ada.client.disconnect()

    pk = pk_of(csms, "COMPAT-1")
    heard = [
        n for n in dashboard.notifications if n["deviceId"] == "COMPAT-1" or n["type"] == "charging.stopped"
    ]
    for notification in heard:
        assert set(notification) == SEED_SHAPE, notification
        assert ISO_UTC.match(notification["timestamp"]), notification
    # charging.stopped's payload names no charger: its id is found from the session's transaction
    assert {(n["chargerId"], n["deviceId"]) for n in heard} == {(pk, "COMPAT-1")}
    # the data is the named event's payload, which is unchanged
    for type_, named in (
        ("charging.started", "charging:started"),
        ("meter.values.updated", "meter:values"),
        ("charging.stopped", "charging:stopped"),
    ):
        assert [n["data"] for n in dashboard.of(type_, "COMPAT-1")] == dashboard.named[named], type_
    started = dashboard.of("charging.started", "COMPAT-1")[0]["data"]
    assert (started["transactionId"], started["chargePointId"], started["connectorId"]) == (tx, "COMPAT-1", 1)
    assert [n["data"]["status"] for n in dashboard.of("charger.status.changed", "COMPAT-1")] == [
        "Preparing",
        "Faulted",
    ]
    fault = dashboard.of("error.occurred", "COMPAT-1")
    assert [n["data"] for n in fault] == [
        {
            "source": "charger",
            "chargePointId": "COMPAT-1",
            "connectorId": 1,
            "status": "Faulted",
            "errorCode": "GroundFailure",
            "info": "RCD tripped",
            "vendorId": None,
            "vendorErrorCode": None,
            "timestamp": fault[0]["data"]["timestamp"],
        }
    ]
    stopped = dashboard.of("charging.stopped", "COMPAT-1")[0]["data"]
    assert (stopped["energyWh"], stopped["cost"]) == (1000, "0.40")
    # the customer hears their own session in the same shape
    assert [n["data"] for n in ada.of("charging.stopped", "COMPAT-1")] == [stopped]


def test_a_dead_lettered_message_is_an_error_for_operators(csms, dashboard, rabbitmq_url):
    """An exchange no actor can apply, with no retries left: the worker dead-letters it and tells
    operators which charger's message it was."""
    poison = addresses.RECORD_EXCHANGES.message([{"charge_point_id": "COMPAT-DLQ", "frames": "not frames"}])
    poison.options["max_retries"] = 0
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_url))
    try:
        connection.channel().basic_publish(
            "", "ocpp_messages", poison.encode(), pika.BasicProperties(delivery_mode=2)
        )
    finally:
        connection.close()
    assert wait_until(lambda: dashboard.of("error.occurred", "COMPAT-DLQ"), timeout=30)
    (error,) = dashboard.of("error.occurred", "COMPAT-DLQ")
    assert set(error) == SEED_SHAPE and ISO_UTC.match(error["timestamp"])
    assert error["chargerId"] == pk_of(csms, "COMPAT-DLQ")
    data = error["data"]
    assert {k: data[k] for k in ("source", "messageId", "queue", "actor", "retries", "chargePointId")} == {
        "source": "pipeline",
        "messageId": poison.message_id,
        "queue": "ocpp_messages",
        "actor": "record_exchanges",
        "retries": 1,
        "chargePointId": "COMPAT-DLQ",
    }
    assert data["error"] == "TypeError: string indices must be integers, not 'str'"  # the last error
    assert dashboard.named["error:occurred"] == [data]


# --- legacy chargers: security profiles over a real WebSocket ----------------------------------------


def refused(url: str, headers: dict[str, str]) -> tuple[int, dict]:
    with pytest.raises(InvalidStatus) as refusal:
        connect(url, subprotocols=["ocpp1.6"], additional_headers=headers, open_timeout=10)
    response = refusal.value.response
    return response.status_code, json.loads(response.body)["error"]["code"]


def test_a_profile_0_charger_connects_without_credentials_and_only_it(csms, operator):
    status, point = operator("PATCH", "/api/cms/points/LEGACY-0", {"securityProfile": 0})
    assert status == 200 and point["securityProfile"] == 0
    assert operator("GET", "/api/cms/points/LEGACY-0")[1]["securityProfile"] == 0
    with RawCharger(csms.ws_url, "LEGACY-0", None) as legacy:
        assert legacy.ws.subprotocol == "ocpp1.6"
        assert legacy.boot()[2]["status"] == "Accepted"
    assert "LEGACY-0 connects without credentials (security profile 0)" in csms.web.log()
    assert operator("GET", "/api/cms/points/PLAIN-1")[1]["securityProfile"] == 1
    assert refused(f"{csms.ws_url}/ocpp/PLAIN-1", {}) == (401, "unauthorized")
    with RawCharger(csms.ws_url, "PLAIN-1", AUTH_KEY) as plain:
        assert plain.boot()[2]["status"] == "Accepted"


def test_a_profile_2_charger_is_refused_over_plain_ws_and_let_in_over_tls(csms, operator):
    assert operator("PATCH", "/api/cms/points/SECURE-2", {"securityProfile": 2})[0] == 200
    url = f"{csms.ws_url}/ocpp/SECURE-2"
    assert refused(url, basic_auth("SECURE-2", AUTH_KEY)) == (403, "tls_required")
    assert refused(url, {**basic_auth("SECURE-2", AUTH_KEY), "X-Forwarded-Proto": "http"}) == (
        403,
        "tls_required",
    )
    assert refused(url, {"X-Forwarded-Proto": "https"}) == (401, "unauthorized")
    # the test's connection comes from 127.0.0.1, a trusted proxy here, which ended the TLS
    with connect(
        url,
        subprotocols=["ocpp1.6"],
        additional_headers={**basic_auth("SECURE-2", AUTH_KEY), "X-Forwarded-Proto": "https"},
        open_timeout=10,
    ) as ws:
        assert ws.subprotocol == "ocpp1.6"
