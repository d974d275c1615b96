"""The `cluster` scenario: what several web nodes buy. One figure per function; `scenario` runs them
in turn and returns their rows together. `bench` is bench/run.py's module (`csms()`, `measure()`,
`fleet()`, the CPU readers).

1. **Every core of a host** (`every_core`): the `gateway` load (closed loop, Heartbeat with a
   MeterValues every 5th message, 1,000 chargers) on `csms-web --processes 2` and on one web
   process: answered msg/s of each and their ratio. Both run at once, as nodes of one CSMS (one
   database, one broker, one worker), and the load goes to one, then the other: the machine is
   shared with other work, and alternating short windows (2, 1, 1, 2, 2, 1) spreads its swings
   over both. Twice: driven by `csms-sim` (as `gateway` is, one window each) and by
   `closed_loop.py`, the same load for a sixth of the generator's CPU. The generator runs on the
   same machine, so its CPU is reported too: when the web processes and the generator together
   fill every core, the ratio measures the machine, not the CSMS.
2. **A command across nodes** (bench/command_routing.py): a Reset's REST round trip when the
   request lands on the node holding the charger and when it lands on another node, alternating;
   target: cross-node adds at most 5 ms at p99.
3. **Capacity per process** (`bench.connections_at`): 15,000 chargers held by one web process at
   1,000 Heartbeats a second in all; targets RSS 1 GB, Heartbeat p99 50 ms.
"""

from __future__ import annotations

import json
import resource
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import closed_loop

GATEWAY_PLAN = {"mode": "closed", "rate": 1.0, "meter_every": 5, "timeout": 30.0}  # as `gateway`
RATIO_TARGET = 1.7
CLOSED_LOOP_ROUNDS = 3  # windows per web process; the scenario's seconds are split among them
ONE_PROCESS_CHARGERS = 15_000


def wait_for_nodes(url: str, processes: int, seconds: float = 60) -> list[str]:
    """Ask `/healthz` over new connections until `processes` distinct nodes answered: `csms()` lets
    the run go once the port takes connections, that is once the first process listens."""
    base = url.replace("ws://", "http://")
    nodes: set[str] = set()
    deadline = time.monotonic() + seconds
    while len(nodes) < processes:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only nodes {sorted(nodes)} answered within {seconds:g} s")
        with urllib.request.urlopen(f"{base}/healthz", timeout=10) as response:
            nodes.add(json.load(response)["node"])
    return sorted(nodes)


def children_cpu_seconds() -> float:
    """CPU of this process's children that were waited for: `csms-sim`'s processes once it returns."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@contextmanager
def single_node(bench: ModuleType, database_url: str, log_dir: Path) -> Iterator[tuple[int, str]]:
    """One more web node, a lone process, beside the ones `csms()` started (same database, broker
    and worker): (its pid, its URL)."""
    port = bench.free_port()
    env = bench.csms_env(database_url, port, log_dir, {"CSMS_NODE_ID": "single"})
    with bench.process([bench.PYTHON, "wsgi.py"], env, log_dir / "web-single.log", port) as web:
        yield web.pid, f"ws://127.0.0.1:{port}"


def every_core(n: int, seconds: float, log_dir: Path, bench: ModuleType) -> list[dict]:
    """The gateway load on 2 web processes and on 1, driven by csms-sim, then by closed_loop."""
    settings = {"CSMS_WEB_PROCESSES": "2"}
    with (
        bench.csms(n, log_dir, settings=settings) as (web, _, url, database_url),
        single_node(bench, database_url, log_dir) as (single_pid, single_url),
    ):
        targets = {2: (web.pid, url, wait_for_nodes(url, 2)), 1: (single_pid, single_url, ["single"])}
        return [
            *_pair(bench, targets, n, seconds, "csms-sim", _with_csms_sim, rounds=1),
            *_pair(bench, targets, n, seconds, "closed_loop", _with_closed_loop, rounds=CLOSED_LOOP_ROUNDS),
        ]


def _pair(bench, targets: dict, n: int, seconds: float, generator: str, drive, rounds: int) -> list[dict]:
    """`rounds` windows of `seconds / rounds` on each target, alternating (2, 1, 1, 2, ...): the rows
    of the median windows, the ratio on the first."""
    windows: dict[int, list[dict]] = {2: [], 1: []}
    for round_ in range(rounds):
        for processes in (2, 1) if round_ % 2 == 0 else (1, 2):
            pid, url, _ = targets[processes]
            windows[processes].append(drive(bench, pid, url, n, seconds / rounds))
    rows = []
    for processes in (2, 1):
        label = f"{processes} web process{'es' if processes > 1 else ''}, {generator}"
        nodes = ", ".join(targets[processes][2])
        rows.append({"system": label, "nodes": nodes, **_median_window(windows[processes])})
    rows[0]["ratio"] = _ratio(rows[0]["answered_per_second"], rows[1]["answered_per_second"])
    rows[0]["ratio_target"] = RATIO_TARGET
    return rows


def _median_window(windows: list[dict]) -> dict:
    """The window of median msg/s, and every window's msg/s."""
    ordered = sorted(windows, key=lambda window: window["answered_per_second"] or 0)
    median = ordered[len(ordered) // 2]
    return {**median, "windows_answered_per_second": " ".join(str(w["answered_per_second"]) for w in windows)}


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def _with_csms_sim(bench: ModuleType, pid: int, url: str, n: int, seconds: float) -> dict:
    """`measure()` as `gateway` runs it; its steady window's figures, with the generator's CPU."""
    before = children_cpu_seconds()
    result = bench.measure(pid, url, n, {**GATEWAY_PLAN, "duration": seconds}, ramp=5)
    generator_cpu = children_cpu_seconds() - before  # csms-sim's processes, joined by now
    steady = result["steady"]
    return {
        "answered_per_second": steady["answered_per_second"],
        "web_cpu_us_per_round_trip": steady["cpu_us_per_round_trip"],
        "generator_cpu_us_per_round_trip": round(generator_cpu / max(result["answered"], 1) * 1e6, 1),
        "web_cores": round(result["server_cpu_s"] / result["seconds"], 2),
        "generator_cores": round(generator_cpu / result["seconds"], 2),
        "machine_busy_pct": steady["machine_busy_pct"],
        "latency_ms_p50": steady["latency_ms_p50"],
        "latency_ms_p99": steady["latency_ms_p99"],
        "errors": result["errors"] + result["timeouts"],
    }


def _with_closed_loop(bench: ModuleType, pid: int, url: str, n: int, seconds: float) -> dict:
    """closed_loop.drive() with the web processes' and the machine's CPU over its window."""

    def window(start: float, end: float) -> dict:
        web, (busy, total) = bench.tree_cpu_seconds(pid), bench.machine_cpu()
        time.sleep(max(end - time.time(), 0))
        (busy_end, total_end) = bench.machine_cpu()
        busy_pct = round(100 * (busy_end - busy) / (total_end - total), 1)
        return {"web_cpu_s": bench.tree_cpu_seconds(pid) - web, "machine_busy_pct": busy_pct}

    result = closed_loop.drive(
        url, bench.fleet(n), seconds, meter_every=GATEWAY_PLAN["meter_every"], on_window=window
    )
    answered = max(result["answered"], 1)
    return {
        "answered_per_second": result["answered_per_second"],
        "web_cpu_us_per_round_trip": round(result["window"]["web_cpu_s"] / answered * 1e6, 1),
        "generator_cpu_us_per_round_trip": round(result["generator_cpu_s"] / answered * 1e6, 1),
        "web_cores": round(result["window"]["web_cpu_s"] / seconds, 2),
        "generator_cores": round(result["generator_cpu_s"] / seconds, 2),
        "machine_busy_pct": result["window"]["machine_busy_pct"],
        "latency_ms_p50": result["latency_ms_p50"],
        "latency_ms_p99": result["latency_ms_p99"],
        "errors": result["errors"] + result["closed_by_server"],
    }


def scenario(n: int, seconds: float, log_dir: Path, bench: ModuleType) -> list[dict]:
    """Every figure of the cluster scenario, in turn."""
    import command_routing

    rows = every_core(n, seconds, log_dir, bench)
    rows += command_routing.round_trips(log_dir, bench)
    rows += bench.connections_at(ONE_PROCESS_CHARGERS, max(seconds, 120), log_dir)
    return rows
