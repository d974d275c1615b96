"""Smart charging end to end, in the embedded mode: obedient simulated chargers over real WebSockets
at a site with a grid connection limit (SPEC "Smart charging"; issue "Done when").

Each test has its own site and chargers on one CSMS (started once for the module). After each, every
recorded instant of the site's history is checked: the sum allowed never exceeded the limit."""

from __future__ import annotations

import itertools
import shutil
import threading
from collections.abc import Iterator
from decimal import Decimal

import pytest
from sqlalchemy import select
from werkzeug.serving import make_server

from csms import create_app
from csms.extensions import db
from csms.models import ChargePoint, ChargingProfile, IdTag, LoadAllocation, LoadChange, Station, Wallet
from csms.models.cluster import ChargerConnection
from csms.runtime import start_background
from csms.services import chargers, users, wallet
from csms.sim.obedient import ObedientCharger
from tests.support.deployment import AUTH_KEY
from tests.support.obedient_fleet import Fleet, SilentCharger
from tests.support.processes import free_port, wait_until
from tests.test_dashboard import sign_in

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def live(tmp_path_factory, sqlite_template) -> Iterator[tuple]:
    workdir = tmp_path_factory.mktemp("smart")
    database = workdir / "csms.sqlite3"
    shutil.copyfile(sqlite_template, database)
    app = create_app(
        {
            "DATABASE_URL": f"sqlite:///{database}",
            "INSTANCE_PATH": str(workdir),
            "TESTING": True,
            "BOOT_CONFIGURATION": "MeterValueSampleInterval=1",
            "LOAD_CALL_TIMEOUT": 1.5,
        }
    )
    stop_background = start_background(app)
    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    fleet = Fleet()
    try:
        yield app, f"ws://127.0.0.1:{port}", fleet
    finally:
        fleet.close()
        server.shutdown()
        stop_background()
        with app.app_context():
            db.engine.dispose()


_sites = itertools.count(1)


class Site:
    """A station with a limit and its chargers (one connector each), connected and booted."""

    def __init__(self, live, limit_a: str, chargers_a: dict[str, float], **kinds):
        self.app, self.url, self.fleet = live
        self.n = next(_sites)
        with self.app.app_context():
            station = Station(name=f"site {self.n}", max_current_a=Decimal(limit_a))
            db.session.add(station)
            # a tag per car: one tag's second transaction would be refused (ConcurrentTx)
            db.session.add_all(IdTag(id_tag=self.tag(name), status="Accepted") for name in chargers_a)
            db.session.commit()
            self.station_id = station.id
            for name, maximum in chargers_a.items():
                chargers.register(self.cp(name), AUTH_KEY, connectors=1)
                point = db.session.scalar(
                    select(ChargePoint).where(ChargePoint.charge_point_id == self.cp(name))
                )
                point.station_id, point.max_current_a = station.id, Decimal(str(maximum))
            db.session.commit()
            db.session.remove()
        self.sims = {}
        for name, maximum in chargers_a.items():
            cls, options = kinds.get(name, (ObedientCharger, {}))
            sim = cls(self.cp(name), AUTH_KEY, self.url, connectors=1, max_current_a=maximum, **options)
            self.sims[name] = self.fleet.connect(sim)
        for name in chargers_a:
            assert wait_until(lambda name=name: self.default_accepted(name), timeout=15), name

    def cp(self, name: str) -> str:
        return f"S{self.n}-{name}"

    def tag(self, name: str) -> str:
        return f"TAG-{self.n}-{name}"

    def query(self, statement):
        with self.app.app_context():
            try:
                return db.session.execute(statement).all()
            finally:
                db.session.remove()

    def default_accepted(self, name: str) -> bool:
        """Its TxDefaultProfile was answered (Accepted, or Rejected by a charger that refuses them)."""
        rows = self.query(
            select(ChargingProfile.status)
            .join(ChargePoint, ChargePoint.id == ChargingProfile.charge_point_id)
            .where(
                ChargePoint.charge_point_id == self.cp(name), ChargingProfile.purpose == "TxDefaultProfile"
            )
        )
        return bool(rows) and rows[0].status != "pending"

    def start(self, *names: str) -> None:
        for name in names:
            self.fleet.start_car(self.cp(name), self.tag(name))

    def stop(self, *names: str) -> None:
        for name in names:
            self.fleet.stop_car(self.cp(name))

    def allowed(self) -> dict[str, tuple[float, str]]:
        """Each running car's allowed current (A) and state, by charger name."""
        rows = self.query(
            select(ChargePoint.charge_point_id, LoadAllocation.allowed, LoadAllocation.state)
            .join(ChargePoint, ChargePoint.id == LoadAllocation.charge_point_id)
            .where(LoadAllocation.station_id == self.station_id)
        )
        prefix = f"S{self.n}-"
        return {row[0].removeprefix(prefix): (row.allowed / 10, row.state) for row in rows}

    def settles_at(self, expected: dict[str, float], timeout: float = 20) -> bool:
        return wait_until(lambda: {k: v for k, (v, _) in self.allowed().items()} == expected, timeout=timeout)

    def told(self, name: str) -> float:
        """What the simulated charger itself now lets its car draw (A)."""
        sim = self.sims[name]
        return sim.limit_a(sim.sockets[0])

    def history(self) -> list:
        return self.query(
            select(LoadChange.event, LoadChange.reason, LoadChange.limit, LoadChange.allowed_sum)
            .where(LoadChange.station_id == self.station_id)
            .order_by(LoadChange.id)
        )

    def assert_never_over_the_limit(self) -> None:
        """Every recorded instant within the limit; the one exception: the instant an operator
        lowered the limit, before the shares were lowered to it (what was allowed under the old)."""
        history = self.history()
        assert history, "nothing was recorded"
        previous_limit = history[0].limit
        for row in history:
            lowered_limit = row.event == "decided" and row.limit < previous_limit
            assert row.allowed_sum <= row.limit or lowered_limit, row
            previous_limit = row.limit


def test_four_cars_share_32_a_then_three_get_10_6_a(live):
    site = Site(live, "32", dict.fromkeys("ABCD", 32.0))
    site.start("A")  # alone first, at the whole site: the others' arrival must lower it
    assert site.settles_at({"A": 32.0}), site.allowed()
    site.start("B", "C", "D")
    assert site.settles_at(dict.fromkeys("ABCD", 8.0)), site.allowed()
    assert wait_until(lambda: all(site.told(name) == 8.0 for name in "ABCD"), timeout=10)
    site.stop("D")
    assert site.settles_at(dict.fromkeys("ABC", 10.6)), site.allowed()
    assert wait_until(lambda: all(site.told(name) == 10.6 for name in "ABC"), timeout=10)
    site.assert_never_over_the_limit()
    assert {row.event for row in site.history()} >= {"decided", "lowered", "raising", "raised"}


def test_tx_default_profile_on_boot_keeps_a_newcomer_at_zero(live):
    site = Site(live, "32", {"A": 16.0})
    sim = site.sims["A"]
    [(connector, profile)] = sim.profiles
    assert connector == 0 and profile["chargingProfilePurpose"] == "TxDefaultProfile"
    assert profile["chargingSchedule"]["chargingSchedulePeriod"] == [{"startPeriod": 0, "limit": 0}]
    sim.sockets[0].transaction_id = 1  # as if a car had started before the CSMS heard of it
    assert sim.limit_a(sim.sockets[0]) == 0
    sim.sockets[0].transaction_id = None


def test_a_car_drawing_6_a_of_its_16_a_gives_the_rest_to_the_other(live):
    site = Site(live, "32", {"A": 32.0, "B": 32.0}, A=(ObedientCharger, {"car_current_a": 6.0}))
    site.start("A", "B")
    # 16 A each at first; then A is measured at 6 A: capped at 7 A, and B gets the 25 A left.
    assert site.settles_at({"A": 7.0, "B": 25.0}), site.allowed()
    assert wait_until(lambda: site.told("B") == 25.0, timeout=10)
    site.assert_never_over_the_limit()


def test_a_charger_that_does_not_answer_is_counted_at_its_last_value(live):
    site = Site(live, "32", dict.fromkeys("ABC", 32.0), B=(SilentCharger, {}))
    site.start("A", "B")
    assert site.settles_at({"A": 16.0, "B": 16.0}), site.allowed()
    site.sims["B"].silent = True
    site.start("C")
    # A is lowered to 10.6 A; B does not answer and still counts at 16 A: C gets only the 5.4 A left.
    assert site.settles_at({"A": 10.6, "B": 16.0, "C": 5.4}), site.allowed()
    assert site.allowed()["B"][1] == "unanswered"
    site.sims["B"].silent = False
    # the next reallocation (B's next meter sample once RESEND_AFTER has passed, if nothing else
    # comes first) lowers B again: taken this time, B comes down to 10.6 A and C goes up to it
    assert site.settles_at(dict.fromkeys("ABC", 10.6), timeout=30), site.allowed()
    assert wait_until(lambda: site.told("B") == 10.6 and site.told("C") == 10.6, timeout=10)
    site.assert_never_over_the_limit()


def test_a_share_the_charger_did_not_take_is_sent_again(live):
    site = Site(live, "32", dict.fromkeys("AB", 32.0), B=(SilentCharger, {}))
    site.start("A")
    assert site.settles_at({"A": 32.0}), site.allowed()
    site.sims["B"].silent = True
    site.start("B")
    # A is lowered to 16 A; B's raise to 16 A is not answered: counted at 16 A, held at 0 A by its
    # TxDefaultProfile. Nothing else changes, yet once it answers again B is told its 16 A.
    assert site.settles_at({"A": 16.0, "B": 16.0}), site.allowed()
    assert wait_until(lambda: site.allowed()["B"] == (16.0, "unanswered"), timeout=10), site.allowed()
    assert site.told("B") == 0
    site.sims["B"].silent = False
    assert wait_until(lambda: site.told("B") == 16.0, timeout=30)
    assert wait_until(lambda: site.allowed()["B"] == (16.0, "steered"), timeout=10), site.allowed()
    site.assert_never_over_the_limit()


class SilentFromBoot(SilentCharger):
    silent = True


def test_a_tx_default_profile_that_did_not_get_through_at_boot_is_sent_again(live):
    site = Site(live, "32", {"A": 16.0}, A=(SilentFromBoot, {}))  # its TxDefaultProfile: no answer
    sim = site.sims["A"]
    assert sim.profiles == []
    sim.silent = False
    # nothing else happens at the site, yet the charger gets it a few seconds later
    assert wait_until(
        lambda: [p["chargingProfilePurpose"] for _, p in sim.profiles] == ["TxDefaultProfile"], timeout=20
    )
    stored = (
        select(ChargingProfile.status)
        .join(ChargePoint, ChargePoint.id == ChargingProfile.charge_point_id)
        .where(ChargePoint.charge_point_id == site.cp("A"))
    )
    assert wait_until(lambda: [row.status for row in site.query(stored)] == ["Accepted"], timeout=10)


def test_an_offline_charger_keeps_its_last_share(live):
    site = Site(live, "32", dict.fromkeys("ABC", 32.0))
    site.start("A", "B")
    assert site.settles_at({"A": 16.0, "B": 16.0}), site.allowed()
    site.fleet.disconnect(site.cp("A"))  # it goes on charging with its last profile
    # the CSMS knows it is gone (its offline trigger may be covered by a reallocation decided after it)
    gone = select(ChargerConnection).where(ChargerConnection.charge_point_id == site.cp("A"))
    assert wait_until(lambda: site.query(gone) == [], timeout=10)
    site.start("C")
    assert site.settles_at({"A": 16.0, "B": 8.0, "C": 8.0}), site.allowed()
    site.assert_never_over_the_limit()


def test_a_charger_rejecting_profiles_is_counted_at_its_maximum(live):
    site = Site(
        live, "32", {"R": 16.0, "A": 32.0, "B": 32.0}, R=(ObedientCharger, {"rejects_profiles": True})
    )
    site.start("R")
    assert site.settles_at({"R": 16.0}), site.allowed()
    site.start("A", "B")
    assert site.settles_at({"R": 16.0, "A": 8.0, "B": 8.0}), site.allowed()
    assert site.allowed()["R"][1] == "rejects"
    site.assert_never_over_the_limit()


# --- the REST API ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def operator(live):
    app = live[0]
    with app.app_context():
        users.create_user("smart-op@example.test", "password-123", role="operator")
        db.session.remove()
    client = app.test_client()
    response = client.post(
        "/api/auth/login", json={"email": "smart-op@example.test", "password": "password-123"}
    )
    return client, {"Authorization": f"Bearer {response.get_json()['access_token']}"}


def a_profile(**overrides) -> dict:
    profile = {
        "chargingProfileId": 7,
        "stackLevel": 2,
        "chargingProfilePurpose": "ChargePointMaxProfile",
        "chargingProfileKind": "Absolute",
        "chargingSchedule": {
            "startSchedule": "2020-01-01T00:00:00Z",
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 12.5}, {"startPeriod": 3600, "limit": 20}],
        },
    }
    return {**profile, **overrides}


def test_an_operator_profile_is_stored_sent_answered_listed_and_cleared(live, operator):
    client, headers = operator
    site = Site(live, "100", {"A": 32.0})
    body = {"chargePointId": site.cp("A"), "connectorId": 0, "csChargingProfiles": a_profile()}
    created = client.post("/api/cms/charging-profiles", json=body, headers=headers)
    assert created.status_code == 201, created.get_json()
    stored = created.get_json()
    assert stored["status"] == "Accepted" and stored["response"] == {"status": "Accepted"}
    assert stored["source"] == "operator" and stored["chargePointId"] == site.cp("A")
    sent = stored["csChargingProfiles"]
    assert sent["chargingSchedule"]["chargingSchedulePeriod"] == [
        {"startPeriod": 0, "limit": 12.5},
        {"startPeriod": 3600, "limit": 20.0},
    ]
    assert (0, sent) in site.sims["A"].profiles  # the charger has it, exactly as stored

    listed = client.get(
        f"/api/cms/charging-profiles?chargePointId={site.cp('A')}", headers=headers
    ).get_json()
    assert {(p["source"], p["purpose"], p["status"]) for p in listed["items"]} == {
        ("operator", "ChargePointMaxProfile", "Accepted"),
        ("load", "TxDefaultProfile", "Accepted"),
    }
    assert client.get(f"/api/cms/charging-profiles/{stored['id']}", headers=headers).get_json() == stored

    composite = client.get(
        f"/api/cms/charging-profiles/composite?chargePointId={site.cp('A')}&connectorId=1&duration=600",
        headers=headers,
    ).get_json()
    schedule = composite["response"]["chargingSchedule"]
    assert composite["response"]["status"] == "Accepted"
    assert schedule["chargingSchedulePeriod"] == [{"startPeriod": 0, "limit": 0}]  # TxDefaultProfile 0 wins

    cleared = client.delete(f"/api/cms/charging-profiles/{stored['id']}", headers=headers)
    assert cleared.status_code == 200 and cleared.get_json()["status"] == "cleared"
    assert all(p["chargingProfileId"] != 7 for _, p in site.sims["A"].profiles)
    again = client.delete(f"/api/cms/charging-profiles/{stored['id']}", headers=headers)
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "charging_profile_cleared"


@pytest.mark.parametrize(
    ("connector", "changes", "problem"),
    [
        (1, {}, "a ChargePointMaxProfile applies to connector 0 (the whole charger)"),
        (
            0,
            {
                "chargingSchedule": {
                    "chargingRateUnit": "A",
                    "startSchedule": "2020-01-01T00:00:00Z",
                    "chargingSchedulePeriod": [{"startPeriod": 5, "limit": 6}],
                }
            },
            "the first period must start at 0",
        ),
        (
            0,
            {
                "chargingSchedule": {
                    "chargingRateUnit": "A",
                    "startSchedule": "2020-01-01T00:00:00Z",
                    "chargingSchedulePeriod": [
                        {"startPeriod": 0, "limit": 6},
                        {"startPeriod": 0, "limit": 8},
                    ],
                }
            },
            "startPeriod must be strictly ascending",
        ),
        (0, {"chargingProfileKind": "Recurring"}, "a Recurring profile needs recurrencyKind Daily or Weekly"),
        (
            0,
            {"validFrom": "2030-01-02T00:00:00Z", "validTo": "2030-01-01T00:00:00Z"},
            "validTo must be after validFrom",
        ),
    ],
)
def test_a_profile_breaking_the_ocpp_rules_is_refused_with_the_reason(
    live, operator, connector, changes, problem
):
    client, headers = operator
    body = {"chargePointId": "nobody", "connectorId": connector, "csChargingProfiles": a_profile(**changes)}
    response = client.post("/api/cms/charging-profiles", json=body, headers=headers)
    assert response.status_code == 422
    assert problem in str(response.get_json()), response.get_json()


@pytest.mark.parametrize(
    "period",
    [
        {"startPeriod": 0, "limit": -1},
        {"startPeriod": 0, "limit": 6, "numberPhases": 4},
        {"startPeriod": -1, "limit": 6},
    ],
)
def test_bad_periods_are_refused(live, operator, period):
    client, headers = operator
    profile = a_profile(
        chargingSchedule={
            "chargingRateUnit": "A",
            "startSchedule": "2020-01-01T00:00:00Z",
            "chargingSchedulePeriod": [period],
        }
    )
    body = {"chargePointId": "x", "connectorId": 0, "csChargingProfiles": profile}
    assert client.post("/api/cms/charging-profiles", json=body, headers=headers).status_code == 422


def test_a_profile_for_an_offline_charger_is_recorded_as_failed(live, operator):
    client, headers = operator
    with live[0].app_context():
        chargers.register("SC-OFFLINE", AUTH_KEY)
        db.session.remove()
    body = {"chargePointId": "SC-OFFLINE", "connectorId": 0, "csChargingProfiles": a_profile()}
    stored = client.post("/api/cms/charging-profiles", json=body, headers=headers).get_json()
    assert stored["status"] == "failed" and "NotConnected" in stored["error"]
    unknown = {**body, "chargePointId": "SC-NOBODY"}
    assert client.post("/api/cms/charging-profiles", json=unknown, headers=headers).status_code == 404


def test_the_site_load_shows_limit_allocations_measured_draw_and_history(live, operator):
    client, headers = operator
    site = Site(live, "32", {"A": 32.0, "B": 32.0})
    site.start("A", "B")
    assert site.settles_at({"A": 16.0, "B": 16.0}), site.allowed()
    measured = select(LoadAllocation.measured).where(LoadAllocation.station_id == site.station_id)
    # the cars draw what they are allowed, as the next samples say (one each second)
    assert wait_until(lambda: [row.measured for row in site.query(measured)] == [160, 160], timeout=20)
    load = client.get(f"/api/cms/stations/{site.station_id}/load", headers=headers).get_json()
    assert (load["unit"], load["limit"], load["allowedSum"], load["strategy"]) == ("A", 32.0, 32.0, "equal")
    assert [(a["chargePointId"], a["allowed"], a["state"]) for a in load["allocations"]] == [
        (site.cp("A"), 16.0, "steered"),
        (site.cp("B"), 16.0, "steered"),
    ]
    assert load["measuredSum"] == 32.0  # the simulated cars draw what they are allowed
    # newest first; a later reallocation that changed nothing may be recorded above it ("decided")
    raised = next(entry for entry in load["history"] if entry["event"] == "raised")
    assert raised["allocations"][f"{site.cp('A')}/1"]["allowed"] == 16.0

    # The operator lowers the limit: the shares follow, lowered first.
    patched = client.patch(
        f"/api/cms/stations/{site.station_id}", json={"maxCurrentA": "20"}, headers=headers
    )
    assert patched.status_code == 200 and patched.get_json()["maxCurrentA"] == "20.0"
    assert site.settles_at({"A": 10.0, "B": 10.0}), site.allowed()
    assert [row.reason for row in site.history()][-1] == "limit changed"
    site.assert_never_over_the_limit()
    bad = client.patch(f"/api/cms/stations/{site.station_id}", json={"strategy": "random"}, headers=headers)
    assert bad.status_code == 422
    assert client.get("/api/cms/stations/999999/load", headers=headers).status_code == 404


def test_the_charger_page_shows_its_profiles_and_its_share_of_the_site(live, operator):
    site = Site(live, "20", {"A": 32.0})
    site.start("A")
    assert wait_until(lambda: site.allowed() == {"A": (20.0, "steered")}, timeout=20), site.allowed()
    client = live[0].test_client()
    sign_in(client, "smart-op@example.test", "password-123")
    html = client.get(f"/chargers/{site.cp('A')}").data.decode()
    assert '<section aria-label="Smart charging"' in html
    assert "Site limit <strong>20.0 A</strong>, strategy equal." in html
    assert "<td>20.0 A</td>" in html and "<td>steered</td>" in html
    fragment = client.get(f"/chargers/{site.cp('A')}/smart-charging").data.decode()
    assert "<td>TxDefaultProfile</td>" in fragment and "<td>TxProfile</td>" in fragment
    assert "<td>20.0 A</td>" in fragment  # the TxProfile's limit


def test_priority_serves_the_priority_customer_first(live):
    app = live[0]
    site = Site(live, "32", {"V": 16.0, "A": 32.0, "B": 32.0})
    with app.app_context():
        db.session.get(Station, site.station_id).strategy = "priority"
        vip = users.create_user(f"vip{site.n}@example.test", "password-123", id_tag=f"VIP-{site.n}")
        wallet.top_up(
            db.session.scalar(select(Wallet.id).where(Wallet.user_id == vip.id)), 100_00, reference="vip"
        )
        db.session.commit()
        db.session.remove()
    with app.app_context():
        result = app.test_cli_runner().invoke(args=["user", "priority", f"vip{site.n}@example.test", "5"])
        refused = app.test_cli_runner().invoke(args=["user", "priority", "nobody@example.test", "5"])
        db.session.remove()
    assert result.exit_code == 0 and "charging priority 5" in result.output
    assert refused.exit_code != 0 and "no user" in refused.output
    site.start("A", "B")
    site.fleet.start_car(site.cp("V"), f"VIP-{site.n}")
    assert site.settles_at({"V": 16.0, "A": 8.0, "B": 8.0}), site.allowed()
    site.assert_never_over_the_limit()


def test_a_site_whose_limit_is_removed_lets_go_of_its_chargers(live, operator):
    client, headers = operator
    site = Site(live, "32", {"A": 16.0})
    site.start("A")
    assert site.settles_at({"A": 16.0}), site.allowed()
    sim = site.sims["A"]
    purposes = {"TxDefaultProfile", "TxProfile"}
    assert wait_until(lambda: {p["chargingProfilePurpose"] for _, p in sim.profiles} == purposes, timeout=10)
    response = client.patch(
        f"/api/cms/stations/{site.station_id}", json={"maxCurrentA": None}, headers=headers
    )
    assert response.status_code == 200
    assert wait_until(lambda: sim.profiles == [], timeout=10), sim.profiles  # no car held at 0 any more
    assert site.allowed() == {}
    path = f"/api/cms/charging-profiles?chargePointId={site.cp('A')}"
    # recorded as cleared once the charger's answers are in; listed only when asked for
    assert wait_until(lambda: client.get(path, headers=headers).get_json()["items"] == [], timeout=10)
    cleared = client.get(f"{path}&cleared=true", headers=headers).get_json()["items"]
    assert {(p["purpose"], p["status"]) for p in cleared} == {
        ("TxDefaultProfile", "cleared"),
        ("TxProfile", "cleared"),
    }


def test_a_charger_joining_a_limited_site_gets_its_tx_default_profile(live, operator):
    client, headers = operator
    app, url, fleet = live
    site = Site(live, "32", {})
    with app.app_context():
        chargers.register(f"S{site.n}-J", AUTH_KEY, connectors=1)
        db.session.remove()
    sim = fleet.connect(ObedientCharger(f"S{site.n}-J", AUTH_KEY, url, connectors=1))
    assert wait_until(
        lambda: app.extensions["ocpp"].registry.get(sim.charge_point_id) is not None, timeout=10
    )
    assert sim.profiles == []  # at no limited site: nothing
    patched = client.patch(
        f"/api/cms/points/{sim.charge_point_id}",
        json={"stationId": site.station_id, "maxCurrentA": "16"},
        headers=headers,
    )
    assert patched.status_code == 200 and patched.get_json()["maxCurrentA"] == "16.0"
    assert wait_until(
        lambda: [p["chargingProfilePurpose"] for _, p in sim.profiles] == ["TxDefaultProfile"], timeout=10
    )


def test_a_site_limited_in_watts_shares_power_and_chargers_follow_in_amperes(live):
    app = live[0]
    site = Site(live, "32", dict.fromkeys("AB", 32.0))
    with app.app_context():
        station = db.session.get(Station, site.station_id)
        station.max_current_a, station.max_power_w = None, 22_080  # 32 A on three phases of 230 V
        db.session.commit()
        db.session.remove()
    site.start("A", "B")
    # allocations in W: 11,040 W each, which the chargers apply as 16 A per phase
    assert wait_until(
        lambda: {k: v * 10 for k, (v, _) in site.allowed().items()} == {"A": 11_040, "B": 11_040}
    )
    assert wait_until(lambda: site.told("A") == 16.0 and site.told("B") == 16.0, timeout=10)
    sent = site.sims["A"].profiles[-1][1]["chargingSchedule"]
    assert (sent["chargingRateUnit"], sent["chargingSchedulePeriod"]) == (
        "W",
        [{"startPeriod": 0, "limit": 11040}],
    )
    site.assert_never_over_the_limit()
