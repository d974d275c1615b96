"""The OCPP 1.6J endpoint against a real web process and real chargers over real WebSockets, in
embedded and production mode: handshake refusals, every charger-initiated action, every kind of bad
input, with the exact frames the charger receives, and the message log the actors store."""

from __future__ import annotations

import itertools
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from websockets.exceptions import ConnectionClosedError, InvalidStatus

from tests.support.chargers import RawCharger
from tests.support.deployment import AUTH_KEY, deployment
from tests.support.processes import wait_until

pytestmark = pytest.mark.slow

CHARGERS = {f"GW-{n}": AUTH_KEY for n in range(1, 12)}
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
EXPIRED = datetime(2020, 1, 1, tzinfo=UTC)
ID_TAGS = {
    "TAG-OK": ("Accepted", None),
    "TAG-BLOCKED": ("Blocked", None),
    "TAG-EXPIRED": ("Accepted", EXPIRED),
    "TAG-FUTURE": ("Accepted", datetime(2099, 1, 1, tzinfo=UTC)),
}


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
        tmp_path_factory.mktemp(f"gateway-{mode}"),
        sqlite_template=sqlite_template,
        charge_points=CHARGERS,
        pending=("GW-11",),
        id_tags=ID_TAGS,
        env={"CSMS_MAX_FRAME_BYTES": "4096"},
        **extra,
    ) as running:
        yield running


# GW-1..8 take turns in the `charger` fixture; GW-9 is the log test's, GW-10 the frame-limit
# test's, GW-11 is registered Pending.
_rotation = itertools.cycle(range(1, 9))


@pytest.fixture
def charger(csms):
    """A booted charger."""
    with RawCharger(csms.ws_url, f"GW-{next(_rotation)}", AUTH_KEY) as raw:
        assert raw.boot()[2]["status"] == "Accepted"
        yield raw


def stored_frames(csms, charge_point_id: str) -> list[tuple]:
    return [
        tuple(row)
        for row in csms.rows(
            "SELECT direction, message_type, unique_id, action, error_code FROM ocpp_messages"
            " WHERE charge_point_id = :cp ORDER BY received_at, direction",
            cp=charge_point_id,
        )
    ]


# --- handshake ---------------------------------------------------------------------------------


def test_accepted_connection_negotiates_ocpp16(csms):
    with RawCharger(csms.ws_url, "GW-1", AUTH_KEY) as raw:
        assert raw.ws.subprotocol == "ocpp1.6"
        assert raw.ws.response.headers["Sec-WebSocket-Protocol"] == "ocpp1.6"


@pytest.mark.parametrize(
    ("user", "password", "status"),
    [
        ("GW-1", None, 401),  # no credentials
        ("GW-1", "wrong-key-0123456789", 401),
        ("GW-2", AUTH_KEY, 401),  # credentials of another charger
        ("GW-404", AUTH_KEY, 404),  # unknown charger
    ],
)
def test_refused_before_the_upgrade(csms, user, password, status):
    target = "GW-1" if user != "GW-404" else "GW-404"
    with pytest.raises(InvalidStatus) as refused:
        if user == target:
            RawCharger(csms.ws_url, target, password)
        else:  # Basic user differs from the URL's charge point
            from websockets.sync.client import connect

            from tests.support.chargers import basic_auth

            connect(
                f"{csms.ws_url}/ocpp/{target}",
                subprotocols=["ocpp1.6"],
                additional_headers=basic_auth(user, password),
            )
    response = refused.value.response
    assert response.status_code == status
    body = json.loads(response.body)
    assert body["error"]["code"] == ("unknown_charge_point" if status == 404 else "unauthorized")
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Basic")


@pytest.mark.parametrize("offered", [[], ["ocpp2.0.1"]])
def test_client_without_ocpp16_is_closed(csms, offered):
    with RawCharger(csms.ws_url, "GW-1", AUTH_KEY, subprotocols=offered) as raw:
        with pytest.raises(ConnectionClosedError) as closed:
            raw.ws.recv(timeout=5)
        assert closed.value.rcvd.code == 1002


def test_pending_charger_boots_pending_and_may_send_nothing_else(csms):
    with RawCharger(csms.ws_url, "GW-11", AUTH_KEY) as raw:
        boot = raw.boot()
        assert boot[2]["status"] == "Pending"
        assert boot[2]["interval"] == 60
        assert raw.call("Heartbeat", {}, "hb")[:3] == [4, "hb", "SecurityError"]


# --- charger-initiated actions: exact answers ------------------------------------------------


def test_boot_notification(charger):
    reply = charger.boot()
    assert reply[0] == 3
    assert set(reply[2]) == {"currentTime", "interval", "status"}
    assert reply[2]["interval"] == 300 and reply[2]["status"] == "Accepted"
    assert ISO_UTC.match(reply[2]["currentTime"])


def test_accepted_boot_pushes_the_boot_profile(charger):
    assert wait_until(lambda: charger.call("Heartbeat", {}) and charger.received_calls, timeout=10)
    call = charger.received_calls[0]
    assert call[2] == "ChangeConfiguration"
    assert call[3] == {"key": "MeterValueSampleInterval", "value": "60"}


def test_heartbeat(charger):
    reply = charger.call("Heartbeat", {}, "hb-1")
    assert reply[:2] == [3, "hb-1"]
    assert list(reply[2]) == ["currentTime"] and ISO_UTC.match(reply[2]["currentTime"])
    sent = datetime.fromisoformat(reply[2]["currentTime"])
    assert abs(sent - datetime.now(UTC)) < timedelta(seconds=5)


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("TAG-OK", {"status": "Accepted"}),
        ("TAG-BLOCKED", {"status": "Blocked"}),
        ("TAG-EXPIRED", {"status": "Expired", "expiryDate": "2020-01-01T00:00:00+00:00"}),
        ("TAG-FUTURE", {"status": "Accepted", "expiryDate": "2099-01-01T00:00:00+00:00"}),
        ("NO-SUCH-TAG", {"status": "Invalid"}),
    ],
)
def test_authorize(charger, tag, expected):
    assert charger.call("Authorize", {"idTag": tag}, "a1") == [3, "a1", {"idTagInfo": expected}]


def test_start_transaction_allocates_ids_and_recognises_a_resend(charger):
    start = {"connectorId": 1, "idTag": "TAG-OK", "meterStart": 1000, "timestamp": "2026-05-01T10:00:00Z"}
    first = charger.call("StartTransaction", start, "s1")
    assert first[2]["idTagInfo"] == {"status": "Accepted"}
    transaction_id = first[2]["transactionId"]
    assert isinstance(transaction_id, int) and 0 < transaction_id < 2**31
    resent = charger.call("StartTransaction", start, "s2")
    assert resent[2]["transactionId"] == transaction_id
    later = charger.call("StartTransaction", {**start, "timestamp": "2026-05-01T11:00:00Z"}, "s3")
    assert later[2]["transactionId"] > transaction_id


def test_the_same_tag_starting_again_on_a_busy_connector_gets_concurrent_tx(charger):
    """OCPP 1.6 §7.2 ConcurrentTx, decided from what this connection saw (no database read): the
    tag's earlier transaction on that connector was never stopped. Once it is, the tag may start."""
    start = {"connectorId": 1, "idTag": "TAG-OK", "meterStart": 0, "timestamp": "2026-06-01T10:00:00Z"}
    first = charger.call("StartTransaction", start, "c1")[2]["transactionId"]
    second = charger.call("StartTransaction", {**start, "timestamp": "2026-06-01T10:05:00Z"}, "c2")
    second_id = second[2]["transactionId"]
    assert second == [3, "c2", {"transactionId": second_id, "idTagInfo": {"status": "ConcurrentTx"}}]
    assert second_id > first
    other = charger.call("StartTransaction", {**start, "connectorId": 2}, "c3")
    assert other[2]["idTagInfo"] == {"status": "Accepted"}  # another connector
    stop = {
        "transactionId": first + 1,
        "meterStop": 0,
        "timestamp": "2026-06-01T10:06:00Z",
        "reason": "DeAuthorized",
    }
    assert charger.call("StopTransaction", stop, "c4") == [3, "c4", {}]
    again = charger.call("StartTransaction", {**start, "timestamp": "2026-06-01T10:10:00Z"}, "c5")
    assert again[2]["idTagInfo"] == {"status": "Accepted"}


def test_start_transaction_with_a_nul_in_its_tag_gets_an_id_and_invalid(charger):
    """The tag can be no one's; the transaction is still recorded (with the tag as the workers store
    it, U+FFFD for NUL) so that whatever the charger does next is accounted for."""
    charger.boot()
    reply = charger.call(
        "StartTransaction",
        {"connectorId": 1, "idTag": "T\x00G", "meterStart": 0, "timestamp": "2026-01-02T00:00:00Z"},
        "nul-tag",
    )
    assert reply[:2] == [3, "nul-tag"] and isinstance(reply[2]["transactionId"], int)
    assert reply[2]["idTagInfo"] == {"status": "Invalid"}


def test_start_transaction_with_an_unknown_tag_still_gets_an_id(charger):
    reply = charger.call(
        "StartTransaction",
        {"connectorId": 2, "idTag": "STRANGER", "meterStart": 0, "timestamp": "2026-05-01T10:00:00+02:00"},
        "s1",
    )
    assert reply[2]["idTagInfo"] == {"status": "Invalid"}
    assert isinstance(reply[2]["transactionId"], int)


@pytest.mark.parametrize("transaction_id", [-1, 987654321])
def test_stop_transaction_is_always_answered(charger, transaction_id):
    reply = charger.call(
        "StopTransaction",
        {"transactionId": transaction_id, "meterStop": 5, "timestamp": "2026-05-01T12:00:00Z"},
        "st",
    )
    assert reply == [3, "st", {}]


def test_stop_transaction_with_id_tag_and_transaction_data(charger):
    start = charger.call(
        "StartTransaction",
        {"connectorId": 1, "idTag": "TAG-OK", "meterStart": 0, "timestamp": "2026-05-02T10:00:00Z"},
    )
    stop = {
        "transactionId": start[2]["transactionId"],
        "idTag": "TAG-OK",
        "meterStop": 1500,
        "timestamp": "2026-05-02T11:00:00Z",
        "reason": "Local",
        "transactionData": [
            {"timestamp": "2026-05-02T10:30:00Z", "sampledValue": [{"value": "750", "unit": "Wh"}]}
        ],
    }
    assert charger.call("StopTransaction", stop, "st1") == [3, "st1", {"idTagInfo": {"status": "Accepted"}}]
    assert charger.call("StopTransaction", stop, "st2") == [3, "st2", {"idTagInfo": {"status": "Accepted"}}]


@pytest.mark.parametrize(
    ("action", "payload", "answer"),
    [
        (
            "MeterValues",
            {
                "connectorId": 1,
                "transactionId": 1,
                "meterValue": [
                    {
                        "timestamp": "2026-05-01T10:05:00Z",
                        "sampledValue": [
                            {"value": "1.234", "unit": "kWh", "measurand": "Energy.Active.Import.Register"},
                            {"value": "7200", "unit": "W", "measurand": "Power.Active.Import", "phase": "L1"},
                        ],
                    }
                ],
            },
            {},
        ),
        (
            "MeterValues",
            {
                "connectorId": 0,
                "meterValue": [{"timestamp": "2026-05-01T10:05:00Z", "sampledValue": [{"value": "1"}]}],
            },
            {},
        ),
        (
            "StatusNotification",
            {
                "connectorId": 1,
                "errorCode": "NoError",
                "status": "Charging",
                "timestamp": "2026-05-01T10:00:00Z",
            },
            {},
        ),
        ("DataTransfer", {"vendorId": "com.acme", "messageId": "diag", "data": "x"}, {"status": "Accepted"}),
        ("DiagnosticsStatusNotification", {"status": "Uploaded"}, {}),
        ("FirmwareStatusNotification", {"status": "Installed"}, {}),
    ],
)
def test_other_charger_actions(charger, action, payload, answer):
    assert charger.call(action, payload, "m1") == [3, "m1", answer]


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ('[2,"bad-json","Heartbeat",{', [4, "bad-json", "FormationViolation", "frame is not valid JSON", {}]),
        (
            '[9,"odd-type","Heartbeat",{}]',
            [4, "odd-type", "FormationViolation", "unknown MessageTypeId 9", {}],
        ),
        ('[2,"no-payload","Heartbeat"]', [4, "no-payload", "FormationViolation"]),
        ('[2,"list-payload","Heartbeat",[]]', [4, "list-payload", "FormationViolation"]),
        (
            '[2,"unknown","FlyToTheMoon",{}]',
            [4, "unknown", "NotImplemented", "unknown action 'FlyToTheMoon'", {}],
        ),
        ('[2,"wrong-way","Reset",{"type":"Hard"}]', [4, "wrong-way", "NotSupported"]),
        ('[2,"missing","Authorize",{}]', [4, "missing", "OccurenceConstraintViolation"]),
        ('[2,"type","Authorize",{"idTag":42}]', [4, "type", "TypeConstraintViolation"]),
        (
            '[2,"too-long","Authorize",{"idTag":"123456789012345678901"}]',
            [4, "too-long", "TypeConstraintViolation"],
        ),
        (
            '[2,"enum","StatusNotification",{"connectorId":1,"errorCode":"NoError","status":"Dancing"}]',
            [4, "enum", "PropertyConstraintViolation", "'Dancing' is not an allowed value at 'status'"],
        ),
        ('[2,"extra","Heartbeat",{"surprise":1}]', [4, "extra", "FormationViolation"]),
        (
            '[2,"bad-time","StatusNotification",{"connectorId":1,"errorCode":"NoError","status":"Available","timestamp":"noon"}]',
            [4, "bad-time", "TypeConstraintViolation"],
        ),
        (
            '[2,"negative","StatusNotification",{"connectorId":-1,"errorCode":"NoError","status":"Available"}]',
            [4, "negative", "PropertyConstraintViolation"],
        ),
        (
            '[2,"tx-on-0","StartTransaction",{"connectorId":0,"idTag":"T","meterStart":0,"timestamp":"2026-01-01T00:00:00Z"}]',
            [4, "tx-on-0", "PropertyConstraintViolation"],
        ),
        # A StartTransaction's values must fit the transaction row its answer creates (#14).
        (
            '[2,"huge-meter","StartTransaction",{"connectorId":1,"idTag":"T","meterStart":9223372036854775808,"timestamp":"2026-01-01T00:00:00Z"}]',
            [
                4,
                "huge-meter",
                "PropertyConstraintViolation",
                "9223372036854775808 is outside 0..9999999999999999 at 'meterStart'",
            ],
        ),
        (
            '[2,"huge-connector","StartTransaction",{"connectorId":4294967296,"idTag":"T","meterStart":0,"timestamp":"2026-01-01T00:00:00Z"}]',
            [
                4,
                "huge-connector",
                "PropertyConstraintViolation",
                "4294967296 is outside 1..2147483647 at 'connectorId'",
            ],
        ),
        (
            '[2,"huge-reservation","StartTransaction",{"connectorId":1,"idTag":"T","meterStart":0,"reservationId":-2147483649,"timestamp":"2026-01-01T00:00:00Z"}]',
            [
                4,
                "huge-reservation",
                "PropertyConstraintViolation",
                "-2147483649 is outside -2147483648..2147483647 at 'reservationId'",
            ],
        ),
        # Standard JSON only: no NaN, no lone surrogates (they could be neither stored nor sent on).
        ('[2,"nan","MeterValues",{"connectorId":NaN,"meterValue":[]}]', [4, "nan", "FormationViolation"]),
        ('[2,"surrogate","Authorize",{"idTag":"\\ud800"}]', [4, "surrogate", "FormationViolation"]),
        (
            '[2,"' + "x" * 40 + '","Heartbeat",{}]',
            [4, "x" * 40, "FormationViolation", "unique id longer than 36 characters", {}],
        ),
    ],
)
def test_bad_frames_get_the_16_error(charger, frame, expected):
    charger.send(frame)
    reply = charger.recv()
    assert reply[: len(expected)] == expected
    assert len(reply) == 5 and isinstance(reply[3], str) and isinstance(reply[4], dict)
    assert charger.call("Heartbeat", {})[0] == 3  # the connection lives on


@pytest.mark.parametrize(
    "frame",
    ["not json at all", '{"an": "object"}', "[]", "[2]", '[2, 17, "Heartbeat", {}]', b"\xff\xfe binary"],
)
def test_frames_without_a_readable_id_are_dropped(charger, frame):
    charger.send(frame)
    reply = charger.call("Heartbeat", {}, "after")  # no answer to the bad frame comes first
    assert reply[:2] == [3, "after"]


def test_replies_to_no_pending_call_are_ignored(charger):
    charger.send([3, "nobody-asked", {"status": "Accepted"}])
    charger.send([4, "nobody-asked-either", "GenericError", "", {}])
    assert charger.call("Heartbeat", {}, "after")[:2] == [3, "after"]


def test_frame_over_the_limit_closes_with_1009(csms):
    with RawCharger(csms.ws_url, "GW-10", AUTH_KEY) as raw:
        raw.send([2, "big", "DataTransfer", {"vendorId": "v", "data": "x" * 5000}])
        with pytest.raises(ConnectionClosedError) as closed:
            raw.recv(timeout=5)
        assert closed.value.rcvd.code == 1009
    with RawCharger(csms.ws_url, "GW-10", AUTH_KEY) as again:  # the charger may come back at once
        assert again.boot()[2]["status"] == "Accepted"


# --- the log -------------------------------------------------------------------------------------


def test_every_frame_lands_in_the_message_log(csms):
    with RawCharger(csms.ws_url, "GW-9", AUTH_KEY) as raw:
        raw.boot()
        raw.call("Heartbeat", {}, "log-hb")
        raw.call("Authorize", {}, "log-bad")
        raw.call(
            "StartTransaction",
            {"connectorId": 1, "idTag": "TAG-OK", "meterStart": 0, "timestamp": "2026-06-01T00:00:00Z"},
            "log-start",
        )
    expected = {
        ("in", 2, "log-hb", "Heartbeat", None),
        ("out", 3, "log-hb", "Heartbeat", None),
        ("in", 2, "log-bad", "Authorize", None),
        ("out", 4, "log-bad", "Authorize", "OccurenceConstraintViolation"),
        ("in", 2, "log-start", "StartTransaction", None),
        ("out", 3, "log-start", "StartTransaction", None),
    }
    assert wait_until(lambda: expected <= set(stored_frames(csms, "GW-9")), timeout=20), stored_frames(
        csms, "GW-9"
    )
    actions = [row[3] for row in stored_frames(csms, "GW-9")]
    assert actions.count("BootNotification") == 2
    assert "ChangeConfiguration" in actions  # the CSMS-initiated boot profile push, both directions
