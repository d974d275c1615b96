"""The fleet simulator (`csms-sim`) against a real CSMS: chargers connect, boot, charge and answer
the CSMS's calls; the report counts what happened; bad arguments and an unreachable CSMS say so."""

from __future__ import annotations

import json
import time

import pytest

from csms.sim.charger import Plan
from csms.sim.cli import load_fleet, main, simulate
from tests.support.deployment import AUTH_KEY, deployment
from tests.support.processes import free_port, wait_until

pytestmark = pytest.mark.slow

FLEET = {f"SIM-{n:03d}": AUTH_KEY for n in range(20)}


@pytest.fixture(scope="module")
def csms(tmp_path_factory, sqlite_template):
    with deployment(
        "embedded", tmp_path_factory.mktemp("sim"), sqlite_template=sqlite_template, charge_points=FLEET
    ) as running:
        yield running


def test_a_simulated_fleet_charges_and_is_measured(csms):
    plan = Plan(csms.ws_url, "closed", rate=1.0, duration=2.0, meter_every=3, timeout=10.0)
    result = simulate(list(FLEET.items()), plan, processes=2)
    assert (result["errors"], result["timeouts"], result["connect_failures"]) == (0, 0, 0)
    assert result["chargers"] == 20
    assert result["answered"] == result["messages"] >= 20 * 5  # boot, status, start, stop and traffic
    assert result["csms_calls_answered"] == 20  # each answered the boot profile push
    assert 0 < result["latency_ms"]["p50"] <= result["latency_ms"]["p99"] <= result["latency_ms"]["max"]
    assert 0 < result["heartbeat_latency_ms"]["p50"] <= result["heartbeat_latency_ms"]["p99"]
    assert result["messages_per_second"] > 0
    assert wait_until(
        lambda: csms.scalar("SELECT count(*) FROM transactions WHERE state = 'stopped'") == 20, timeout=30
    )
    assert csms.scalar("SELECT count(*) FROM meter_samples") > 0


def test_fixed_rate_mode_keeps_the_rate(csms):
    plan = Plan(csms.ws_url, "rate", rate=5.0, duration=2.0, meter_every=0, timeout=10.0)
    began = time.monotonic()
    result = simulate(list(FLEET.items())[:5], plan, answer_times=True)
    traffic = result["answered"] - 5 * 4  # minus boot, status, start and stop
    assert 5 * 5 * 2 * 0.7 <= traffic <= 5 * 5 * 2 * 1.1
    # the answer times the benchmarks cut a steady window from
    assert len(result["answered_at"]) == result["answered"]
    assert began < min(result["answered_at"]) <= max(result["answered_at"]) < time.monotonic()


def test_cli_writes_a_json_report(csms, tmp_path, capsys):
    fleet = tmp_path / "fleet.csv"
    fleet.write_text(
        "chargePointId,authKey\n" + "".join(f"{cp},{key}\n" for cp, key in list(FLEET.items())[:3])
    )
    assert load_fleet(fleet) == list(FLEET.items())[:3]
    report_path = tmp_path / "report.json"
    code = main(["--url", csms.ws_url, "--fleet", str(fleet), "--duration", "1", "--json", str(report_path)])
    assert code == 0
    assert "3 chargers" in capsys.readouterr().out
    assert json.loads(report_path.read_text())["chargers"] == 3


def test_cli_refuses_bad_arguments_and_reports_an_unreachable_csms(tmp_path):
    with pytest.raises(SystemExit) as usage:
        main(["--prefix", "X-"])  # no --key
    assert usage.value.code == 2
    with pytest.raises(SystemExit):
        main(["--prefix", "X-", "--key", "k" * 16, "--duration", "0"])
    unreachable = f"ws://127.0.0.1:{free_port()}"
    assert (
        main(["--url", unreachable, "--prefix", "X-", "--key", "k" * 16, "--count", "2", "--duration", "1"])
        == 1
    )
    empty = tmp_path / "empty.csv"
    empty.write_text("chargePointId,authKey\n")
    assert main(["--fleet", str(empty)]) == 2
