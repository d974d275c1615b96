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
from csms.models import ChargePoint, ChargingProfile, IdTag, LoadAllocation, LoadChange, Station
from csms.runtime import start_background
from csms.services import chargers
from csms.sim.obedient import ObedientCharger
from tests.support.deployment import AUTH_KEY
from tests.support.obedient_fleet import Fleet, SilentCharger
from tests.support.processes import free_port, wait_until

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
            db.session.add(IdTag(id_tag=f"TAG-{self.n}", status="Accepted"))
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
            self.fleet.start_car(self.cp(name), f"TAG-{self.n}")

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
            select(LoadChange.event, LoadChange.limit, LoadChange.allowed_sum)
            .where(LoadChange.station_id == self.station_id)
            .order_by(LoadChange.id)
        )

    def assert_never_over_the_limit(self) -> None:
        history = self.history()
        assert history, "nothing was recorded"
        over = [row for row in history if row.allowed_sum > row.limit]
        assert not over, over


def test_four_cars_share_32_a_then_three_get_10_6_a(live):
    site = Site(live, "32", dict.fromkeys("ABCD", 32.0))
    site.start("A", "B", "C", "D")
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
    site.assert_never_over_the_limit()
    site.sims["B"].silent = False


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
