"""`csms-web --processes N`: N web processes, each a node, on one port (csms.web_processes).

Real processes throughout: the supervisor and its `python wsgi.py` children on PostgreSQL and
RabbitMQ, real WebSocket chargers, signals from the test."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path

import pytest
import socketio
from prometheus_client.parser import text_string_to_metric_families

from csms.services import tokens
from csms.web_processes import Child, Supervisor, node_id
from tests.support.chargers import RawCharger
from tests.support.deployment import deployment
from tests.support.processes import ROOT, free_port, wait_until

KEY = "cluster-key-0123456789"
SECRET = "web-processes-secret-key-0123456789abcdef"
CHARGERS = [f"WP-{n:02d}" for n in range(20)]


def test_node_ids_keep_the_host_id_for_one_process_and_number_several():
    assert node_id("web-a", 1, 1) == "web-a"
    assert [node_id("web-a", index, 3) for index in (1, 2, 3)] == ["web-a-1", "web-a-2", "web-a-3"]
    for index, processes in [(0, 2), (3, 2), (1, 0)]:
        with pytest.raises(ValueError, match=f"process {index} of {processes}"):
            node_id("web-a", index, processes)


def children_of(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def nodes_health(base_url: str) -> dict[str, dict]:
    """`/healthz` of each node seen so far, asked over a new connection each time until both
    processes have answered: the kernel picks the process per connection."""
    seen: dict[str, dict] = {}

    def both_answered() -> bool:
        with urllib.request.urlopen(f"{base_url}/healthz", timeout=10) as response:
            body = json.load(response)
        seen[body["node"]] = body
        return len(seen) == 2

    assert wait_until(both_answered, timeout=30, interval=0), seen.keys()
    return seen


def metric(base_url: str, name: str) -> float:
    """One unlabelled sample of `/metrics`, from whichever process answers."""
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=10) as response:
        families = text_string_to_metric_families(response.read().decode())
    return next(sample.value for family in families for sample in family.samples if sample.name == name)


def connected_chargers(base_url: str) -> float:
    return metric(base_url, "csms_chargers_connected")


@pytest.fixture
def two_processes(tmp_path, postgres_databases, rabbitmq_url):
    """A production-mode CSMS whose web side is `python wsgi.py` with CSMS_WEB_PROCESSES=2."""
    with deployment(
        "production",
        tmp_path,
        database_url=postgres_databases(),
        rabbitmq_url=rabbitmq_url,
        env={"CSMS_WEB_PROCESSES": "2", "CSMS_BOOT_CONFIGURATION": "", "CSMS_SECRET_KEY": SECRET},
        charge_points=dict.fromkeys(CHARGERS, KEY),
        operators={"ops@example.test": "password-123"},  # Socket.IO serves an existing account only
    ) as csms:
        assert wait_until(lambda: len(children_of(csms.web.process.pid)) == 2, timeout=10)
        nodes_health(csms.web.base_url)  # both listen (the first one to listen let the fixture go)
        yield csms


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.rabbitmq
def test_chargers_land_on_both_processes_each_a_node(two_processes):
    csms = two_processes
    with ExitStack() as stack:
        for charge_point_id in CHARGERS:
            charger = stack.enter_context(RawCharger(csms.ws_url, charge_point_id, KEY))
            assert charger.boot()[2]["status"] == "Accepted"
        health = nodes_health(csms.web.base_url)
        assert sorted(health) == ["production-test-1", "production-test-2"]
        connections = {node: body["gateway"]["connections"] for node, body in health.items()}
        assert sum(connections.values()) == len(CHARGERS), connections
        assert min(connections.values()) >= 1, connections  # both at 1 in 2**19: never by chance
        assert {body["mode"] for body in health.values()} == {"production"}
        # /metrics: whichever process a scrape reaches reports both (one multiprocess directory)
        for _ in range(6):
            assert connected_chargers(csms.web.base_url) == len(CHARGERS)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.rabbitmq
def test_dashboards_on_either_process_hear_events_over_the_websocket_transport(two_processes):
    """Socket.IO's polling transport spreads one session over several HTTP requests, which the
    kernel may hand to different processes; over its WebSocket transport (the dashboard's) a session
    is one connection, on one process, and every process relays every event."""
    csms = two_processes
    operator_id = csms.scalar("SELECT id FROM users WHERE role = 'operator'")
    token = tokens.issue(tokens.Identity(operator_id, "operator"), SECRET, timedelta(minutes=5))
    received: list[tuple[int, str]] = []
    clients = []
    try:
        for n in range(8):
            client = socketio.Client(reconnection=False)
            client.on("charger:status:changed", lambda data, n=n: received.append((n, data["status"])))
            client.connect(
                csms.web.base_url, auth={"token": token}, transports=["websocket"], wait_timeout=10
            )
            clients.append(client)
        assert wait_until(lambda: metric(csms.web.base_url, "csms_socketio_clients") == 8, timeout=5)
        with RawCharger(csms.ws_url, CHARGERS[0], KEY) as charger:
            charger.boot()
            status = {"connectorId": 1, "errorCode": "NoError", "status": "Available"}
            assert charger.call("StatusNotification", status)[2] == {}
            assert wait_until(lambda: len(received) >= 8, timeout=20), received
        assert sorted(received) == [(n, "Available") for n in range(8)]
    finally:
        # together: each client's disconnect waits about 2.5 s for its read loop to end
        leaving = [threading.Thread(target=client.disconnect) for client in clients]
        for thread in leaving:
            thread.start()
        for thread in leaving:
            thread.join(timeout=30)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.rabbitmq
def test_a_killed_process_is_restarted_and_sigterm_stops_them_all(two_processes):
    csms = two_processes
    parent = csms.web.process
    first, second = children_of(parent.pid)
    os.kill(first, signal.SIGKILL)
    assert wait_until(lambda: len(set(children_of(parent.pid)) - {first, second}) == 1, timeout=15)
    assert sorted(nodes_health(csms.web.base_url)) == ["production-test-1", "production-test-2"]
    assert "exited with status -9" in csms.web.log()

    children = children_of(parent.pid)
    parent.send_signal(signal.SIGTERM)
    assert parent.wait(timeout=30) == 0
    for pid in children:
        assert not Path(f"/proc/{pid}").exists(), f"web process {pid} outlived its supervisor"


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.rabbitmq
def test_processes_stop_when_their_supervisor_is_killed(two_processes):
    """Each child runs in a session of its own: a SIGKILL of the parent's group does not reach
    them, their watch of the parent does."""
    parent = two_processes.web.process
    children = children_of(parent.pid)
    assert {os.getsid(pid) for pid in children} == set(children)
    os.killpg(parent.pid, signal.SIGKILL)
    parent.wait(timeout=10)
    assert wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in children), timeout=10)
    assert f"the supervisor (pid {parent.pid}) is gone; stopping" in two_processes.web.log()


def run_web(args: list[str], env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "wsgi.py", *args],
        cwd=ROOT,
        env={**os.environ, "CSMS_INSTANCE_PATH": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow
def test_embedded_mode_refuses_several_processes(tmp_path):
    port = str(free_port())
    for args, env in [(["--processes", "2"], {}), ([], {"CSMS_WEB_PROCESSES": "3"})]:
        result = run_web(args, {"CSMS_RABBITMQ_URL": "", "CSMS_PORT": port, **env}, tmp_path)
        assert result.returncode == 1
        processes = args[1] if args else "3"
        assert result.stderr.splitlines()[-1] == (
            f"csms-web: --processes {processes} needs production mode (CSMS_RABBITMQ_URL and "
            "CSMS_DATABASE_URL): embedded mode's SQLite database and in-process worker serve one "
            "process only"
        )


@pytest.mark.slow
def test_the_flag_wins_over_the_environment(tmp_path):
    """CSMS_WEB_PROCESSES=2 would be refused in embedded mode; `--processes 1` serves."""
    port = free_port()
    env = {**os.environ, "CSMS_RABBITMQ_URL": "", "CSMS_PORT": str(port), "CSMS_WEB_PROCESSES": "2"}
    env["CSMS_INSTANCE_PATH"] = str(tmp_path)
    process = subprocess.Popen(
        [sys.executable, "wsgi.py", "--processes", "1"], cwd=ROOT, env=env, start_new_session=True
    )
    try:

        def listening() -> bool:
            assert process.poll() is None, "the web process exited"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return True
            except OSError:
                return False

        assert wait_until(listening, timeout=30)
        assert children_of(process.pid) == []
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@pytest.mark.slow
def test_bad_process_counts_are_refused(tmp_path):
    for value in ("0", "-1", "two"):
        result = run_web(["--processes", value], {"CSMS_RABBITMQ_URL": ""}, tmp_path)
        assert result.returncode == 2
        assert "argument --processes" in result.stderr
    result = run_web([], {"CSMS_RABBITMQ_URL": "", "CSMS_WEB_PROCESSES": "0"}, tmp_path)
    assert result.returncode == 1
    assert "ValueError: CSMS_WEB_PROCESSES='0': must be at least 1" in result.stderr


@pytest.mark.slow
def test_a_taken_port_stops_the_start(tmp_path, rabbitmq_url):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {"CSMS_RABBITMQ_URL": rabbitmq_url, "CSMS_PORT": str(port)}
        env["CSMS_DATABASE_URL"] = "postgresql://nobody@127.0.0.1:1/none"  # never reached
        result = run_web(["--processes", "2"], env, tmp_path)
    assert result.returncode == 1
    assert (
        result.stderr.splitlines()[-1]
        == f"csms-web: cannot listen on 127.0.0.1:{port}: Address already in use"
    )


@pytest.mark.slow
def test_children_that_keep_failing_to_start_stop_the_supervisor(tmp_path):
    starts = tmp_path / "starts"
    crash = f"open({str(starts)!r}, 'a').write('x'); raise SystemExit(3)"
    children = [Child(1, "n-1", [sys.executable, "-c", crash], dict(os.environ))]
    supervisor = Supervisor(
        children, startup_grace=10, max_failed_starts=3, first_backoff=0.05, max_backoff=0.2
    )
    assert supervisor.run() == 1
    assert starts.read_text() == "xxx"


@pytest.mark.slow
def test_a_child_that_ran_a_while_is_restarted_without_counting_as_a_failed_start(tmp_path):
    """Each start lives past the grace period, then crashes: restarted every time, never given up."""
    starts = tmp_path / "starts"
    crash = f"import time; open({str(starts)!r}, 'a').write('x'); time.sleep(0.3); raise SystemExit(3)"
    children = [Child(1, "n-1", [sys.executable, "-c", crash], dict(os.environ))]
    supervisor = Supervisor(
        children, startup_grace=0.2, max_failed_starts=2, first_backoff=0.05, max_backoff=0.05
    )
    stopper = threading.Timer(4, supervisor.stop)
    stopper.start()
    assert supervisor.run() == 0  # stopped, not given up
    assert len(starts.read_text()) >= 4
