"""Id tags, local lists and accounts with real chargers (the `ocpp` library's client), in both
modes: embedded (one web process, SQLite, its in-process worker) and production (PostgreSQL,
RabbitMQ, a `dramatiq` worker). One deployment per mode, shared by the tests of the module."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import pytest
import socketio
from ocpp.v16 import call

from tests.support.chargers import RawCharger
from tests.support.deployment import AUTH_KEY, deployment
from tests.support.http import Http
from tests.support.network import CoreOnlyCharger, ListKeepingCharger
from tests.support.processes import wait_until

pytestmark = [pytest.mark.slow]

CHARGERS = {f"NET-CP-{n}": AUTH_KEY for n in range(1, 5)}
LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module", params=["embedded", "production"])
def csms(request, tmp_path_factory, sqlite_template):
    production = request.param == "production"
    services = (
        {
            "database_url": request.getfixturevalue("postgres_databases")(),
            "rabbitmq_url": request.getfixturevalue("rabbitmq_url"),
        }
        if production
        else {"sqlite_template": sqlite_template}
    )
    with deployment(
        request.param,
        tmp_path_factory.mktemp(f"network-{request.param}"),
        env={"CSMS_BOOT_CONFIGURATION": "", "CSMS_CALL_TIMEOUT": "5", "CSMS_DISPATCH_INTERVAL": "0.2"},
        charge_points=CHARGERS,
        id_tags={
            "GOOD-1": ("Accepted", None),
            "BLOCKED-1": ("Blocked", None),
            "OLD-1": ("Accepted", LONG_AGO),
            "CONC-1": ("Accepted", None),
        },
        operators={"ops@example.test": "password-123"},
        **services,
    ) as running:
        yield running


@pytest.fixture
def operator(csms) -> Http:
    return Http(csms.web.base_url).login("ops@example.test")


def authorize(charger, id_tag: str) -> dict:
    return charger.run(charger.charge_point.call(call.Authorize(id_tag=id_tag))).id_tag_info


def start(charger, id_tag: str, connector: int = 1, meter: int = 1000):
    timestamp = datetime.now(UTC).isoformat()
    request = call.StartTransaction(
        connector_id=connector, id_tag=id_tag, meter_start=meter, timestamp=timestamp
    )
    return charger.run(charger.charge_point.call(request))


def test_blocked_tags_and_members_of_a_blocked_group_are_refused(csms, operator):
    assert operator("POST", "/api/cms/id-tags", {"idTag": "GROUP-A", "status": "Blocked"})[0] == 201
    status, member = operator("POST", "/api/cms/id-tags", {"idTag": "MEMBER-A", "parentIdTag": "GROUP-A"})
    assert status == 201 and member["status"] == "Accepted", member
    with ListKeepingCharger(csms.ws_url, "NET-CP-1", AUTH_KEY) as charger:
        assert authorize(charger, "GOOD-1") == {"status": "Accepted"}
        assert authorize(charger, "BLOCKED-1") == {"status": "Blocked"}
        assert authorize(charger, "OLD-1") == {"status": "Expired", "expiry_date": LONG_AGO.isoformat()}
        assert authorize(charger, "NO-SUCH-TAG") == {"status": "Invalid"}
        assert authorize(charger, "MEMBER-A") == {"status": "Blocked", "parent_id_tag": "GROUP-A"}

        refused = start(charger, "MEMBER-A")
        assert refused.transaction_id > 0
        assert refused.id_tag_info == {"status": "Blocked", "parent_id_tag": "GROUP-A"}
        assert start(charger, "BLOCKED-1", connector=2).id_tag_info == {"status": "Blocked"}

        # The group let through: its members are accepted at once (the web node's cache follows).
        assert operator("PATCH", "/api/cms/id-tags/GROUP-A", {"status": "Accepted"})[0] == 200
        assert wait_until(lambda: authorize(charger, "MEMBER-A")["status"] == "Accepted", timeout=5)
        # ...and blocking one card refuses it, wherever it was accepted before.
        assert operator("PATCH", "/api/cms/id-tags/GOOD-1", {"status": "Blocked"})[0] == 200
        assert wait_until(lambda: authorize(charger, "GOOD-1") == {"status": "Blocked"}, timeout=5)


def stop(charger, transaction_id: int, meter: int = 1500) -> None:
    request = call.StopTransaction(
        meter_stop=meter, timestamp=datetime.now(UTC).isoformat(), transaction_id=transaction_id
    )
    charger.run(charger.charge_point.call(request))


def test_a_tag_charging_at_one_charger_gets_concurrent_tx_at_another(csms):
    with (
        ListKeepingCharger(csms.ws_url, "NET-CP-3", AUTH_KEY) as first,
        ListKeepingCharger(csms.ws_url, "NET-CP-4", AUTH_KEY) as second,
    ):
        running = start(first, "CONC-1")
        assert running.id_tag_info == {"status": "Accepted"}
        refused = start(second, "CONC-1")
        assert refused.id_tag_info == {"status": "ConcurrentTx"}
        stop(second, refused.transaction_id, meter=1000)  # §5.11: the charger ends what it was refused

        stop(first, running.transaction_id)
        open_ones = "SELECT count(*) FROM transactions WHERE id_tag = 'CONC-1' AND state = 'started'"
        assert wait_until(lambda: csms.scalar(open_ones) == 0, timeout=15)
        assert start(second, "CONC-1", connector=2).id_tag_info == {"status": "Accepted"}


def _local_list(operator: Http, charge_point_id: str) -> dict:
    status, body = operator("GET", f"/api/cms/points/{charge_point_id}/local-list")
    assert status == 200, body
    return body


def _updates_reach(charger, count: int) -> bool:
    return wait_until(lambda: len(charger.charge_point.updates) >= count, timeout=20)


def test_local_lists_follow_tag_changes_with_differential_updates(csms, operator):
    operator("POST", "/api/cms/id-tags", {"idTag": "LL-GROUP"})
    operator("POST", "/api/cms/id-tags", {"idTag": "LL-1", "parentIdTag": "LL-GROUP"})
    with ListKeepingCharger(csms.ws_url, "NET-CP-2", AUTH_KEY) as charger:
        cp = charger.charge_point
        status, body = operator(
            "PATCH", "/api/cms/points/NET-CP-2/local-list", {"policy": "parent", "parentIdTag": "LL-GROUP"}
        )
        assert status == 200 and body["policy"] == "parent", body
        assert _updates_reach(charger, 1)
        accepted = {"status": "Accepted", "parent_id_tag": "LL-GROUP"}
        assert cp.updates[0] == (
            1,
            "Full",
            [
                {"id_tag": "LL-1", "id_tag_info": accepted},
                {"id_tag": "LL-GROUP", "id_tag_info": {"status": "Accepted"}},
            ],
        )
        assert wait_until(lambda: _local_list(operator, "NET-CP-2")["inSync"], timeout=10)
        shown = _local_list(operator, "NET-CP-2")
        assert (shown["version"], shown["chargerVersion"], shown["supported"]) == (1, 1, True)
        assert shown["lastSyncOutcome"] == "Accepted" and shown["lastSyncAt"]
        assert [entry["idTag"] for entry in shown["entries"]] == ["LL-1", "LL-GROUP"]

        # a new member, a blocked one, one withdrawn: one Differential update each, versions advancing
        operator("POST", "/api/cms/id-tags", {"idTag": "LL-2", "parentIdTag": "LL-GROUP"})
        assert _updates_reach(charger, 2)
        assert cp.updates[1] == (2, "Differential", [{"id_tag": "LL-2", "id_tag_info": accepted}])
        operator("PATCH", "/api/cms/id-tags/LL-1", {"status": "Blocked"})
        assert _updates_reach(charger, 3)
        blocked = {"status": "Blocked", "parent_id_tag": "LL-GROUP"}
        assert cp.updates[2] == (3, "Differential", [{"id_tag": "LL-1", "id_tag_info": blocked}])
        operator("DELETE", "/api/cms/id-tags/LL-2")
        assert _updates_reach(charger, 4)
        assert cp.updates[3] == (4, "Differential", [{"id_tag": "LL-2"}])
        assert cp.local_list == {"LL-1": blocked, "LL-GROUP": {"status": "Accepted"}}
        assert wait_until(lambda: _local_list(operator, "NET-CP-2")["chargerVersion"] == 4, timeout=10)
        # a tag outside the group changes nothing on this charger
        operator("POST", "/api/cms/id-tags", {"idTag": "LL-OTHER"})

        # The charger reboots holding a version the CSMS never sent: a Full update follows.
        cp.list_version = 42
        asked = cp.version_asked
        charger.run(cp.call(call.BootNotification(charge_point_model="Test-1", charge_point_vendor="ACME")))
        assert _updates_reach(charger, 5)
        assert cp.version_asked == asked + 1
        assert cp.updates[4][:2] == (43, "Full")
        assert cp.local_list == {"LL-1": blocked, "LL-GROUP": {"status": "Accepted"}}
        assert len(cp.updates) == 5

    # Offline, a change waits for the charger's return: back without booting (its list kept), it is
    # asked its version first, then gets what it missed as a Differential update.
    gone = lambda: not operator("GET", "/api/cms/points/NET-CP-2")[1]["connection"]["connected"]  # noqa: E731
    assert wait_until(gone, timeout=10)
    operator("POST", "/api/cms/id-tags", {"idTag": "LL-3", "parentIdTag": "LL-GROUP"})
    waiting = (
        "SELECT count(*) FROM queued_commands WHERE charge_point_id = 'NET-CP-2'"
        " AND action = 'GetLocalListVersion' AND state = 'queued'"
    )
    assert wait_until(lambda: csms.scalar(waiting) == 1, timeout=10)
    answers = {"GetLocalListVersion": {"listVersion": 43}, "SendLocalList": {"status": "Accepted"}}
    with RawCharger(csms.ws_url, "NET-CP-2", AUTH_KEY, answers=answers) as back:
        back.call("Heartbeat", {})  # its first message: it may get its queued calls now
        assert wait_until(lambda: _answer_calls(back) and len(back.received_calls) >= 2, timeout=20), (
            back.received_calls
        )
        assert [frame[2:] for frame in back.received_calls] == [
            ["GetLocalListVersion", {}],
            [
                "SendLocalList",
                {
                    "listVersion": 44,
                    "updateType": "Differential",
                    "localAuthorizationList": [
                        {"idTag": "LL-3", "idTagInfo": {"status": "Accepted", "parentIdTag": "LL-GROUP"}}
                    ],
                },
            ],
        ]
        assert wait_until(lambda: _local_list(operator, "NET-CP-2")["chargerVersion"] == 44, timeout=10)


def _answer_calls(charger: RawCharger) -> bool:
    """Answer whatever the CSMS sends for a moment (RawCharger answers calls while it reads)."""
    with contextlib.suppress(TimeoutError):
        charger.recv(timeout=0.3)
    return True


def test_a_charger_without_the_profile_gets_no_list(csms, operator):
    with CoreOnlyCharger(csms.ws_url, "NET-CP-4", AUTH_KEY):
        status, body = operator("PATCH", "/api/cms/points/NET-CP-4/local-list", {"policy": "all"})
        assert status == 200, body
        assert wait_until(lambda: _local_list(operator, "NET-CP-4")["supported"] is False, timeout=15)
        shown = _local_list(operator, "NET-CP-4")
        assert (shown["version"], shown["chargerVersion"], shown["inSync"]) == (0, None, False)
    sent = (
        "SELECT count(*) FROM queued_commands WHERE charge_point_id = 'NET-CP-4' AND action = 'SendLocalList'"
    )
    assert csms.scalar(sent) == 0


def test_a_disabled_user_cannot_log_in_and_its_tokens_stop_working(csms, operator):
    customer = Http(csms.web.base_url)
    status, registered = customer(
        "POST", "/api/auth/register", {"email": "dis@example.test", "password": "password-123"}
    )
    assert status == 201, registered
    customer.token = registered["access_token"]
    assert customer("GET", "/api/user/wallet")[0] == 200

    status, body = operator("PATCH", f"/api/cms/users/{registered['userId']}", {"disabled": True})
    assert (status, body["disabled"]) == (200, True), body
    assert customer("GET", "/api/user/wallet") == (
        403,
        {"error": {"code": "account_disabled", "message": "this account is disabled", "details": {}}},
    )
    status, body = Http(csms.web.base_url)(
        "POST", "/api/auth/login", {"email": "dis@example.test", "password": "password-123"}
    )
    assert (status, body["error"]["code"]) == (403, "account_disabled")
    live = socketio.Client(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):  # refused by the server
        live.connect(csms.web.base_url, auth={"token": customer.token}, wait_timeout=5)

    assert operator("PATCH", f"/api/cms/users/{registered['userId']}", {"disabled": False})[0] == 200
    Http(csms.web.base_url).login("dis@example.test")
