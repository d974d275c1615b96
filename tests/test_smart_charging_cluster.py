"""Smart charging in production mode: a site whose chargers sit on two web nodes, its shares decided
by a separate worker process, which reaches each charger through the node holding it (the cluster
bus), serialised per site by a PostgreSQL advisory lock."""

from __future__ import annotations

import pytest

from csms.sim.obedient import ObedientCharger
from tests.support.deployment import AUTH_KEY, deployment
from tests.support.http import Http
from tests.support.obedient_fleet import Fleet
from tests.support.processes import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.rabbitmq]

CHARGERS = ["SCL-1", "SCL-2", "SCL-3"]
OPERATOR = "operator@example.test"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, postgres_databases, rabbitmq_url):
    with deployment(
        "production",
        tmp_path_factory.mktemp("smart-cluster"),
        database_url=postgres_databases(),
        rabbitmq_url=rabbitmq_url,
        web_nodes=2,
        env={"CSMS_BOOT_CONFIGURATION": "", "CSMS_LOAD_CALL_TIMEOUT": "3"},
        charge_points=dict.fromkeys(CHARGERS, AUTH_KEY),
        id_tags={f"TAG-{cp}": ("Accepted", None) for cp in CHARGERS},  # a tag per car (ConcurrentTx)
        operators={OPERATOR: "password-123"},
    ) as csms:
        fleet = Fleet()
        try:
            yield csms, fleet
        finally:
            fleet.close()


def test_a_site_split_over_two_nodes_is_shared_by_the_worker(cluster):
    csms, fleet = cluster
    http = Http(csms.nodes[1].base_url).login(OPERATOR)
    status, station = http("POST", "/api/cms/stations", {"name": "depot", "maxCurrentA": "32"})
    assert status == 201, station
    for charge_point_id in CHARGERS:
        status, point = http("PATCH", f"/api/cms/points/{charge_point_id}", {"stationId": station["id"]})
        assert status == 200 and point["maxCurrentA"] is None, point
    sims = {}
    for index, charge_point_id in enumerate(CHARGERS):
        node = csms.nodes[0] if index == 0 else csms.nodes[1]
        sims[charge_point_id] = fleet.connect(
            ObedientCharger(charge_point_id, AUTH_KEY, node.ws_url, connectors=1, max_current_a=32.0)
        )

    def defaults_accepted() -> bool:
        return all(
            any(p["chargingProfilePurpose"] == "TxDefaultProfile" for _, p in sim.profiles)
            for sim in sims.values()
        )

    assert wait_until(defaults_accepted, timeout=20)

    def shares() -> dict[str, float]:
        status, load = http("GET", f"/api/cms/stations/{station['id']}/load")
        assert status == 200, load
        return {a["chargePointId"]: a["allowed"] for a in load["allocations"]}

    for charge_point_id in CHARGERS[:2]:
        fleet.start_car(charge_point_id, f"TAG-{charge_point_id}")
    assert wait_until(lambda: shares() == {"SCL-1": 16.0, "SCL-2": 16.0}, timeout=20), shares()
    told = lambda cp: sims[cp].limit_a(sims[cp].sockets[0])  # noqa: E731
    assert wait_until(lambda: told("SCL-1") == 16.0 and told("SCL-2") == 16.0, timeout=10)

    fleet.start_car("SCL-3", "TAG-SCL-3")
    assert wait_until(lambda: shares() == dict.fromkeys(CHARGERS, 10.6), timeout=20), shares()
    assert wait_until(lambda: all(told(cp) == 10.6 for cp in CHARGERS), timeout=10)

    history = csms.rows(
        'SELECT event, "limit", allowed_sum FROM load_changes WHERE station_id = :s ORDER BY id',
        s=station["id"],
    )
    assert history and all(row.allowed_sum <= row.limit for row in history), history
    # each profile went through the node holding its charger, and was audited there
    audited = csms.scalar("SELECT count(*) FROM command_audit WHERE action = 'SetChargingProfile'")
    assert audited >= 6
