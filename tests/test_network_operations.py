"""Running the network with real chargers (the `ocpp` library's client over a real WebSocket), in
both modes: embedded (SQLite, in-process worker) and production (PostgreSQL, RabbitMQ, a `dramatiq`
worker). Reservations with their fee, availability while charging, maintenance outcomes, firmware
updates from an uploaded file, diagnostics uploaded to the CSMS and downloaded by an operator, and a
job for an offline charger waiting in the command queue."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from ocpp.v16 import call

from tests.support.deployment import AUTH_KEY, deployment
from tests.support.http import Http
from tests.support.network_charger import NetworkCharger
from tests.support.processes import wait_until

pytestmark = pytest.mark.slow

CHARGERS = ("NET-R", "NET-A", "NET-F", "NET-D", "NET-OFF")


@pytest.fixture(scope="module", params=["embedded", "production"])
def csms(request, tmp_path_factory, sqlite_template):
    mode = request.param
    extra = {}
    if mode == "production":
        extra = {
            "database_url": request.getfixturevalue("postgres_databases")(),
            "rabbitmq_url": request.getfixturevalue("rabbitmq_url"),
        }
    with deployment(
        mode,
        tmp_path_factory.mktemp(f"network-{mode}"),
        sqlite_template=sqlite_template,
        env={
            "CSMS_BOOT_CONFIGURATION": "",
            "CSMS_CALL_TIMEOUT": "3",
            "CSMS_DISPATCH_INTERVAL": "0.2",
            "CSMS_PAYMENT_PROVIDER": "development",
            "CSMS_UPLOAD_MAX_BYTES": "4096",
        },
        charge_points=dict.fromkeys(CHARGERS, AUTH_KEY),
        id_tags={"BOB-TAG": ("Accepted", None)},
        customers={"ada@example.test": ("ADA-TAG", 10_000)},
        operators={"op@example.test": "password-123"},
        tariff={"energy_price": Decimal("0.4000"), "reservation_fee": Decimal("1.5000")},
        **extra,
    ) as running:
        yield running


@pytest.fixture(scope="module")
def operator(csms) -> Http:
    return Http(csms.web.base_url).login("op@example.test")


@pytest.fixture(scope="module")
def ada(csms) -> Http:
    return Http(csms.web.base_url).login("ada@example.test")


def now(offset: float = 0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset)).isoformat()


def point(operator: Http, charge_point_id: str) -> dict:
    status, body = operator("GET", f"/api/cms/points/{charge_point_id}")
    assert status == 200, body
    return body


def connector(operator: Http, charge_point_id: str, number: int) -> dict:
    return next(c for c in point(operator, charge_point_id)["connectors"] if c["connectorId"] == number)


def fee_entries(http: Http, reservation_id: int) -> list[tuple[str, str]]:
    """The reservation's ledger entries (its fee held, then captured or refunded), oldest first."""
    ledger = http("GET", "/api/user/wallet?perPage=500")[1]["ledger"]
    return [(e["kind"], e["amount"]) for e in reversed(ledger) if e["reservationId"] == reservation_id]


def logged_start(operator: Http, charge_point_id: str, connector_id: int, id_tag: str) -> bool:
    """The workers stored (and so applied: the same database transaction) a StartTransaction of
    this tag on this connector."""
    path = f"/api/cms/messages?chargePointId={charge_point_id}&perPage=500"
    return any(
        m["action"] == "StartTransaction"
        and m["direction"] == "in"
        and (m["payload"]["connectorId"], m["payload"]["idTag"]) == (connector_id, id_tag)
        for m in operator("GET", path)[1]["items"]
    )


def raw(method: str, url: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def start(charger: NetworkCharger, connector_id: int, tag: str, reservation_id: int | None = None):
    return charger.send(
        call.StartTransaction(
            connector_id=connector_id,
            id_tag=tag,
            meter_start=0,
            timestamp=now(),
            reservation_id=reservation_id,
        )
    )


def stop(charger: NetworkCharger, transaction_id: int) -> None:
    charger.send(call.StopTransaction(meter_stop=100, timestamp=now(), transaction_id=transaction_id))


# --- reservations ---------------------------------------------------------------------------------


def test_a_reservation_is_used_by_its_tag_refused_to_another_and_its_fee_captured(csms, operator, ada):
    with NetworkCharger(csms.ws_url, "NET-R", AUTH_KEY) as charger:
        status, reservation = ada(
            "POST",
            "/api/user/reservations",
            {"chargePointId": "NET-R", "connectorId": 1, "expiryDate": now(600)},
        )
        assert status == 201, reservation
        assert (reservation["state"], reservation["fee"], reservation["idTag"]) == (
            "accepted",
            "1.50",
            "ADA-TAG",
        )
        assert charger.asked("ReserveNow") == [
            {"connector_id": 1, "id_tag": "ADA-TAG", "reservation_id": reservation["id"]}
        ]
        assert fee_entries(ada, reservation["id"]) == [("hold", "1.50")]
        charger.status(1, "Reserved", now())
        assert wait_until(lambda: connector(operator, "NET-R", 1)["status"] == "Reserved", timeout=10)
        assert [r["id"] for r in point(operator, "NET-R")["reservations"]] == [reservation["id"]]

        # A charger that let another tag start on the reserved connector: the CSMS keeps the reservation.
        other = start(charger, 1, "BOB-TAG", reservation["id"])
        stop(charger, other.transaction_id)
        assert wait_until(lambda: logged_start(operator, "NET-R", 1, "BOB-TAG"), timeout=10)
        assert ada("GET", f"/api/user/reservations/{reservation['id']}")[1]["state"] == "accepted"

        used = start(charger, 1, "ADA-TAG", reservation["id"])
        mine = f"/api/user/reservations/{reservation['id']}"
        assert wait_until(lambda: ada("GET", mine)[1]["state"] == "used", timeout=10)
        final = ada("GET", mine)[1]
        assert (final["transactionId"], final["feeOutcome"]) == (used.transaction_id, "captured")
        assert fee_entries(ada, reservation["id"]) == [("hold", "1.50"), ("capture", "1.50")]
        stop(charger, used.transaction_id)
    created = "SELECT payload FROM cms_events WHERE type = 'cms.reservation.created' AND entity_id = :id"
    assert wait_until(lambda: csms.rows(created, id=str(reservation["id"])), timeout=10)


def test_a_reservation_expires_frees_the_connector_and_its_fee_is_captured(csms, operator, ada):
    with NetworkCharger(csms.ws_url, "NET-R", AUTH_KEY) as charger:
        status, reservation = ada(
            "POST",
            "/api/user/reservations",
            {"chargePointId": "NET-R", "connectorId": 2, "expiryDate": now(2)},
        )
        assert status == 201, reservation
        mine = f"/api/user/reservations/{reservation['id']}"
        assert wait_until(lambda: ada("GET", mine)[1]["state"] == "expired", timeout=10)
        assert ada("GET", mine)[1]["feeOutcome"] == "captured"
        assert fee_entries(ada, reservation["id"]) == [("hold", "1.50"), ("capture", "1.50")]
        # The connector is free again: another tag may reserve it.
        status, again = operator(
            "POST",
            "/api/cms/reservations",
            {"chargePointId": "NET-R", "connectorId": 2, "idTag": "BOB-TAG", "expiryDate": now(600)},
        )
        assert (status, again["state"], again["fee"]) == (201, "accepted", "0.00")
        # A StartTransaction past the expiry does not use an expired reservation.
        late = start(charger, 2, "ADA-TAG", reservation["id"])
        stop(charger, late.transaction_id)
        assert wait_until(lambda: logged_start(operator, "NET-R", 2, "ADA-TAG"), timeout=10)
        assert ada("GET", mine)[1]["state"] == "expired"
        status, cancelled = operator("POST", f"/api/cms/reservations/{again['id']}/cancel")
        assert (status, cancelled["state"]) == (200, "cancelled")
        assert charger.asked("CancelReservation") == [{"reservation_id": again["id"]}]


def test_cancelled_and_rejected_reservations_refund_the_fee(csms, operator, ada):
    with NetworkCharger(csms.ws_url, "NET-R", AUTH_KEY) as charger:
        body = {"chargePointId": "NET-R", "connectorId": 0, "expiryDate": now(600)}
        status, reservation = ada("POST", "/api/user/reservations", body)
        assert (status, reservation["connectorId"]) == (201, 0), reservation
        status, conflict = ada("POST", "/api/user/reservations", body)
        assert (status, conflict["error"]["code"]) == (409, "connector_reserved")
        status, cancelled = ada("POST", f"/api/user/reservations/{reservation['id']}/cancel")
        assert (status, cancelled["state"], cancelled["feeOutcome"]) == (200, "cancelled", "refunded")
        assert fee_entries(ada, reservation["id"]) == [("hold", "1.50"), ("refund", "1.50")]
        status, again = ada("POST", f"/api/user/reservations/{reservation['id']}/cancel")
        assert (status, again["error"]["code"]) == (409, "reservation_not_open")

        charger.charge_point.reserve_answer = "Occupied"
        status, refused = ada("POST", "/api/user/reservations", body)
        assert (status, refused["error"]["code"]) == (409, "charger_rejected"), refused
        rejected_id = refused["error"]["details"]["reservationId"]
        rejected = ada("GET", f"/api/user/reservations/{rejected_id}")[1]
        assert (rejected["state"], rejected["chargerStatus"], rejected["feeOutcome"]) == (
            "rejected",
            "Occupied",
            "refunded",
        )
        assert fee_entries(ada, rejected_id) == [("hold", "1.50"), ("refund", "1.50")]
    status, offline = ada("POST", "/api/user/reservations", body)
    assert (status, offline["error"]["code"]) == (409, "charger_offline")
    reservations = ada("GET", "/api/user/reservations?state=rejected")[1]["items"]
    assert reservations[0]["reason"] == "charge point 'NET-R' is not connected"
    assert fee_entries(ada, reservations[0]["id"]) == [("hold", "1.50"), ("refund", "1.50")]
    for bad in (
        {**body, "expiryDate": now(-5)},
        {**body, "connectorId": 9},
        {**body, "chargePointId": "NOPE"},
    ):
        status, refused = ada("POST", "/api/user/reservations", bad)
        assert status in (404, 422), refused


# --- availability and maintenance ---------------------------------------------------------------------


def test_availability_asked_while_charging_applies_after_the_transaction(csms, operator):
    with NetworkCharger(csms.ws_url, "NET-A", AUTH_KEY) as charger:
        started = start(charger, 1, "BOB-TAG")
        charger.charge_point.charging.add(1)
        body = {
            "deviceId": "NET-A",
            "action": "ChangeAvailability",
            "payload": {"connectorId": 1, "type": "Inoperative"},
        }
        status, reply = operator("POST", "/api/charger/command", body)
        assert (status, reply["response"]) == (200, {"status": "Scheduled"})
        assert wait_until(
            lambda: connector(operator, "NET-A", 1)["availabilityState"] == "scheduled", timeout=10
        )
        assert connector(operator, "NET-A", 1)["availability"] == "Inoperative"

        stop(charger, started.transaction_id)
        charger.charge_point.charging.clear()
        charger.status(1, "Unavailable", now())
        assert wait_until(
            lambda: connector(operator, "NET-A", 1)["availabilityState"] == "applied", timeout=10
        )

        for action, payload in (
            ("UnlockConnector", {"connectorId": 2}),
            ("ClearCache", {}),
            ("TriggerMessage", {"requestedMessage": "Heartbeat"}),
        ):
            status, reply = operator(
                "POST", "/api/charger/command", {"deviceId": "NET-A", "action": action, "payload": payload}
            )
            assert status == 200, reply

        def recorded() -> dict:
            return {
                op["action"]: (op["outcome"], op["status"]) for op in point(operator, "NET-A")["operations"]
            }

        expected = {
            "ChangeAvailability": ("answered", "Scheduled"),
            "ClearCache": ("answered", "Accepted"),
            "TriggerMessage": ("answered", "Accepted"),
            "UnlockConnector": ("answered", "Unlocked"),
        }
        assert wait_until(lambda: recorded() == expected, timeout=10), recorded()


# --- firmware ---------------------------------------------------------------------------------------


def upload_firmware(csms, operator: Http, content: bytes, name: str = "fw-2.0.bin") -> tuple[int, dict]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    status, answer = raw(
        "POST",
        f"{csms.web.base_url}/api/cms/firmware-files",
        body,
        {
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Authorization": f"Bearer {operator.token}",
        },
    )
    return status, json.loads(answer)


def test_a_firmware_update_walks_its_states_and_the_new_version_shows_after_the_boot(csms, operator):
    image = b"\x7fELF firmware 2.0" * 10
    status, stored = upload_firmware(csms, operator, image)
    assert status == 201, stored
    assert (stored["sizeBytes"], stored["filename"]) == (len(image), "fw-2.0.bin")
    status, too_big = upload_firmware(csms, operator, b"x" * 5000)
    assert (status, too_big["error"]["code"]) == (413, "file_too_large")

    with NetworkCharger(csms.ws_url, "NET-F", AUTH_KEY) as charger:
        status, job = operator(
            "POST",
            "/api/cms/firmware-updates",
            {"chargePointIds": ["NET-F"], "fileId": stored["id"], "retries": 2},
        )
        assert status == 201, job
        assert job["location"] == stored["url"] and job["targets"][0]["status"] == "Pending"
        assert wait_until(lambda: charger.asked("UpdateFirmware"), timeout=10)
        asked = charger.asked("UpdateFirmware")[0]
        assert (asked["location"], asked["retries"]) == (stored["url"], 2)
        assert raw("GET", asked["location"]) == (200, image)  # the charger's download
        assert raw("GET", asked["location"].replace("/firmware/", "/firmware/x"))[0] == 404

        path = f"/api/cms/firmware-updates/{job['id']}"

        def target() -> dict:
            return operator("GET", path)[1]["targets"][0]

        assert wait_until(lambda: target()["status"] == "Scheduled", timeout=10)
        assert operator("POST", f"{path}/refresh")[0] == 202
        assert wait_until(lambda: charger.asked("TriggerMessage"), timeout=10)
        assert charger.asked("TriggerMessage") == [{"requested_message": "FirmwareStatusNotification"}]
        charger.send(call.FirmwareStatusNotification(status="Idle"))  # not busy yet: changes nothing
        for step in ("Downloading", "Downloaded", "Installing", "Installed"):
            charger.send(call.FirmwareStatusNotification(status=step))
            assert wait_until(lambda step=step: target()["status"] == step, timeout=10), target()
        charger.send(call.FirmwareStatusNotification(status="Downloading"))  # late and out of order
        charger.send(
            call.BootNotification(
                charge_point_model="Test-1", charge_point_vendor="ACME", firmware_version="2.0"
            )
        )
        assert wait_until(lambda: target()["firmwareVersion"] == "2.0", timeout=10), target()
        assert (target()["status"], point(operator, "NET-F")["firmwareVersion"]) == ("Installed", "2.0")


def test_jobs_for_an_offline_charger_wait_in_the_command_queue(csms, operator):
    status, job = operator(
        "POST",
        "/api/cms/firmware-updates",
        {"chargePointIds": ["NET-OFF"], "location": "https://fw.example.test/3.0.bin", "ttlSeconds": 600},
    )
    assert status == 201, job
    command = operator("GET", f"/api/charger/commands/{job['targets'][0]['commandId']}")[1]
    assert (command["state"], command["action"], command["payload"]["location"]) == (
        "queued",
        "UpdateFirmware",
        "https://fw.example.test/3.0.bin",
    )
    for bad, code in (
        ({"chargePointIds": ["NOPE"], "location": "https://x.test/a.bin"}, 404),
        ({"chargePointIds": ["NET-OFF"]}, 422),
        ({"chargePointIds": [], "location": "https://x.test/a.bin"}, 422),
        ({"chargePointIds": ["NET-OFF"], "location": "https://x.test/a.bin", "fileId": 1}, 422),
    ):
        status, refused = operator("POST", "/api/cms/firmware-updates", bad)
        assert status == code, (bad, refused)


# --- diagnostics ------------------------------------------------------------------------------------


def test_a_diagnostics_upload_lands_once_and_downloads(csms, operator):
    with NetworkCharger(csms.ws_url, "NET-D", AUTH_KEY) as charger:
        status, job = operator("POST", "/api/cms/diagnostics", {"chargePointIds": ["NET-D"], "retries": 1})
        assert status == 201, job
        assert wait_until(lambda: charger.asked("GetDiagnostics"), timeout=10)
        location = charger.asked("GetDiagnostics")[0]["location"]
        assert location.startswith(f"{csms.web.base_url}/files/diagnostics/") and location.endswith("/")
        path = f"/api/cms/diagnostics/{job['id']}"

        def target() -> dict:
            return operator("GET", path)[1]["targets"][0]

        assert wait_until(lambda: target()["status"] == "Accepted", timeout=10), target()
        assert target()["fileName"] == "diagnostics.log"
        charger.send(call.DiagnosticsStatusNotification(status="Uploading"))
        log = b"2026-12-02T04:00:00Z all well\n" * 20
        assert raw("PUT", location + "diagnostics.log", b"x" * 5000)[0] == 413
        assert raw("PUT", location + "diagnostics.log", b"x" * 100_000)[0] == 413  # refused unread
        status, landed = raw("PUT", location + "diagnostics.log", log, {"Content-Type": "text/plain"})
        assert status == 201, landed
        assert raw("PUT", location + "diagnostics.log", log)[0] == 409  # one use
        assert raw("PUT", location.replace("/diagnostics/", "/diagnostics/x") + "a.log", log)[0] == 404
        assert operator("POST", f"{path}/refresh")[0] == 202
        assert wait_until(lambda: charger.asked("TriggerMessage"), timeout=10)
        assert charger.asked("TriggerMessage") == [{"requested_message": "DiagnosticsStatusNotification"}]
        charger.send(call.DiagnosticsStatusNotification(status="Uploaded"))
        assert wait_until(lambda: target()["status"] == "Uploaded", timeout=10), target()
        assert (target()["file"]["sizeBytes"], target()["file"]["filename"]) == (len(log), "diagnostics.log")

        download = f"{csms.web.base_url}{path}/files/NET-D"
        assert raw("GET", download, headers={"Authorization": f"Bearer {operator.token}"}) == (200, log)
        assert raw("GET", download)[0] == 401
        assert operator("GET", f"{path}/files/NET-R")[0] == 404
