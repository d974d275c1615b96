"""`make bench`: each scenario runs the CSMS (production mode: gevent web process, RabbitMQ,
PostgreSQL, one `dramatiq csms.worker actors` worker) and, where it makes sense, the baseline central system
(`bench/baseline/`) side by side, drives them with `csms-sim`, prints a table and writes JSON to
`bench/results/`. Traffic goes to 127.0.0.1 only; every run is bounded in chargers and seconds.

    python bench/run.py                      # every scenario
    python bench/run.py gateway fixed-rate   # some
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pika
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from closed_loop import open_charger_socket  # noqa: E402  (bench/, this script's folder)

from csms.broker import QUEUES  # noqa: E402  (every queue the CSMS declares)
from csms.sim.charger import Plan  # noqa: E402
from csms.sim.cli import simulate  # noqa: E402

RESULTS = ROOT / "bench" / "results"
POSTGRES_ADMIN = os.environ.get("CSMS_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
RABBITMQ = os.environ.get("CSMS_BENCH_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
DATABASE = os.environ.get("CSMS_BENCH_DATABASE", "csms_bench")  # dropped and made again by each run
KEY = "bench-key-0123456789"
PYTHON = sys.executable


# --- processes -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, process: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and its running descendants (`dramatiq` works in forked children)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return cpu_seconds(pid) + sum(tree_cpu_seconds(int(child)) for child in children)


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])
    tick = os.sysconf("SC_CLK_TCK")
    return (total - idle) / tick, total / tick


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def tree_rss_mb(pid: int) -> float:
    """RSS of a process and its running descendants (`csms-web --processes N` serves in children)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return rss_mb(pid) + sum(tree_rss_mb(int(child)) for child in children)


@contextmanager
def process(args: list[str], env: dict[str, str], log: Path, port: int | None = None):
    with open(log, "w") as out:
        proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        if port is not None:
            wait_port(port, proc)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)


SECRET_KEY = "bench-secret-key-0123456789abcdef0123"


def csms_env(url: str, port: int, log_dir: Path, settings: dict[str, str] | None = None) -> dict[str, str]:
    """The CSMS_* settings of a bench process on database `url` (a web node listens on `port`)."""
    return {
        "CSMS_DATABASE_URL": url,
        "CSMS_RABBITMQ_URL": RABBITMQ,
        "CSMS_PORT": str(port),
        "CSMS_INSTANCE_PATH": str(log_dir),
        "CSMS_BOOT_CONFIGURATION": "",  # the baseline pushes nothing either
        "CSMS_SECRET_KEY": SECRET_KEY,
        **(settings or {}),
    }


@contextmanager
def csms(
    chargers: int,
    log_dir: Path,
    worker_niceness: int = 10,
    settings: dict[str, str] | None = None,
    worker_processes: int = 1,
):
    """A fresh database with `chargers` registered, the web process and a worker, by default at a
    lower CPU priority: chargers wait on the web process, not on the worker, so on a shared host the
    worker yields the CPU (as the README advises). `settings`: CSMS_* variables of this run."""
    name = DATABASE
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    url = POSTGRES_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ))
    refuse_foreign_consumers(connection)
    for queue in QUEUES:
        for suffix in ("", ".DQ", ".XQ"):
            connection.channel().queue_delete(queue + suffix)
    connection.close()
    port = free_port()
    env = csms_env(url, port, log_dir, settings)
    flask = [PYTHON, "-m", "flask", "--app", "wsgi"]
    subprocess.run(
        [*flask, "db", "upgrade"], cwd=ROOT, env={**os.environ, **env}, check=True, capture_output=True
    )
    fleet = log_dir / "fleet.csv"
    fleet.write_text("".join(f"B-{n:05d},{KEY}\n" for n in range(chargers)))
    subprocess.run(
        [*flask, "charger", "import", str(fleet)],
        cwd=ROOT,
        env={**os.environ, **env},
        check=True,
        capture_output=True,
    )
    workers = ["nice", "-n", str(worker_niceness), PYTHON, "-m", "dramatiq", "csms.worker", "actors"]
    workers += ["--processes", str(worker_processes), "--threads", "8"]
    with (
        process([PYTHON, "wsgi.py"], env, log_dir / "web.log", port) as web,
        process(workers, env, log_dir / "worker.log") as worker,
    ):
        nice_session(worker.pid, worker_niceness)
        wait_ready(worker, log_dir / "worker.log", worker_processes)
        yield web, worker, f"ws://127.0.0.1:{port}", url


def wait_ready(worker: subprocess.Popen, log: Path, processes: int, timeout: float = 60) -> None:
    """Until every worker process has imported the actors and consumes: a run measures a CSMS that
    is up, as chargers meet it, not one still starting (a py-spy profile of the first seconds of a
    connect storm found the workers still importing)."""
    deadline = time.monotonic() + timeout
    while log.read_text(errors="replace").count("is ready for action") < processes:
        if worker.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the worker did not start: {log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.2)


def refuse_foreign_consumers(connection: pika.BlockingConnection) -> None:
    """Stop before the run if any process consumes the CSMS queues: a worker left over from an
    interrupted run, or a developer's `make run`, would take part of the load (its stores count in
    `pipeline`, its CPU in every row) and redeclare the queues the bench deletes."""
    busy = []
    for queue in QUEUES:
        channel = connection.channel()
        try:
            consumers = channel.queue_declare(queue, passive=True).method.consumer_count
        except pika.exceptions.ChannelClosedByBroker:  # no such queue, so no consumer
            continue
        if consumers:
            busy.append(f"{queue} ({consumers})")
        channel.close()
    if busy:
        raise SystemExit(
            f"RabbitMQ at {RABBITMQ} has consumers on {', '.join(busy)}: stop the CSMS workers "
            "using it (`pgrep -af 'dramatiq csms.worker'`) and run again"
        )


def nice_session(pid: int, niceness: int) -> None:
    """Lower the CPU priority of a process's whole session. Linux with autogroups (the default on
    desktops and on this machine) schedules each session as one group, so `nice` ranks a process
    only against its own session's: the niced worker, in a session of its own, took 0.7-0.9 of a
    core during the 10,000-charger connect storm while the web process got 0.5-0.6."""
    autogroup = Path(f"/proc/{pid}/autogroup")
    if autogroup.exists():
        autogroup.write_text(str(niceness))


@contextmanager
def reference_server(script: str, log: Path):
    """A server the CSMS is compared with (a `bench/` script taking `--port`), running meanwhile."""
    port = free_port()
    with process([PYTHON, script, "--port", str(port)], {}, log, port) as proc:
        yield proc, f"ws://127.0.0.1:{port}"


def baseline(log_dir: Path):
    return reference_server("bench/baseline/central_system.py", log_dir / "baseline.log")


def stack_floor(log_dir: Path):
    return reference_server("bench/floor/echo_server.py", log_dir / "floor.log")


def fleet(n: int) -> list[tuple[str, str]]:
    return [(f"B-{i:05d}", KEY) for i in range(n)]


def measure(
    server_pid: int, url: str, chargers: int, plan_args: dict, processes: int = 2, ramp: float = 0
) -> dict:
    """Drive the server and report the simulator's figures with the server's CPU and RSS (its
    process and its children's: `csms-web --processes N`): over the whole run (connects, boots and
    transactions included) and over the steady part, once every charger is connected and busy
    (`steady`)."""
    plan = Plan(url, **plan_args)
    samples: list[tuple[float, float, tuple[float, float]]] = []  # (time, server CPU, machine CPU)
    done = threading.Event()

    def sample_cpu() -> None:
        while not done.is_set():
            samples.append((time.monotonic(), tree_cpu_seconds(server_pid), machine_cpu()))
            done.wait(0.25)

    sampler = threading.Thread(target=sample_cpu, daemon=True)
    started = time.monotonic()
    sampler.start()
    cpu_before = tree_cpu_seconds(server_pid)
    result = simulate(fleet(chargers), plan, processes=processes, ramp=ramp, answer_times=True)
    cpu = tree_cpu_seconds(server_pid) - cpu_before
    done.set()
    sampler.join()
    answered_at = result.pop("answered_at")
    latencies = result.pop("latencies_ms")
    actions = result.pop("answered_actions")
    result["server_cpu_s"] = round(cpu, 2)
    result["cpu_us_per_round_trip"] = round(cpu / max(result["answered"], 1) * 1e6, 1)
    result["server_rss_mb"] = round(tree_rss_mb(server_pid), 1)
    window = busy_window(answered_at, actions)
    result["all_busy_after_s"] = round(window[0] - started, 1) if window[0] else None
    result["all_busy_until_s"] = round(window[1] - started, 1) if window[1] else None
    result["steady"] = steady_state(answered_at, latencies, actions, samples, window)
    return result


def busy_window(answered_at: list[float], actions: list[str]) -> tuple[float, float]:
    """Every charger is connected and sending from the last StartTransaction answered (each
    charger's traffic follows its own) until the first StopTransaction (its traffic is over)."""
    starts = [t for t, action in zip(answered_at, actions, strict=True) if action == "StartTransaction"]
    stops = [t for t, action in zip(answered_at, actions, strict=True) if action == "StopTransaction"]
    return (max(starts, default=0.0), min(stops, default=0.0))


def steady_state(
    answered_at: list[float], latencies: list[float], actions: list[str], samples: list, window
) -> dict:
    """Answers per second, their latency, the server's CPU per answer and how busy the whole machine
    was between the window's bounds (CPU read from the samples nearest inside them)."""
    inside = [sample for sample in samples if window[0] <= sample[0] <= window[1]]
    if len(inside) < 2:
        return {"answered_per_second": None, "cpu_us_per_round_trip": None}
    (t0, cpu0, machine0), (t1, cpu1, machine1) = inside[0], inside[-1]
    answers = [(ms, a) for t, ms, a in zip(answered_at, latencies, actions, strict=True) if t0 <= t <= t1]
    steady = sorted(ms for ms, _ in answers)
    heartbeats = sorted(ms for ms, action in answers if action == "Heartbeat")
    return {
        "seconds": round(t1 - t0, 1),
        "answered_per_second": round(len(steady) / (t1 - t0), 1),
        "cpu_us_per_round_trip": round((cpu1 - cpu0) / max(len(steady), 1) * 1e6, 1),
        "latency_ms_p50": round(steady[len(steady) // 2], 1) if steady else None,
        "latency_ms_p99": round(steady[int(len(steady) * 0.99)], 1) if steady else None,
        "heartbeat_ms_p50": round(heartbeats[len(heartbeats) // 2], 1) if heartbeats else None,
        "heartbeat_ms_p99": round(heartbeats[int(len(heartbeats) * 0.99)], 1) if heartbeats else None,
        "machine_busy_pct": round(100 * (machine1[0] - machine0[0]) / (machine1[1] - machine0[1]), 1),
    }


# --- scenarios -------------------------------------------------------------------------------------


def side_by_side(n: int, plan: dict, log_dir: Path, ramp: float, label: str = "") -> list[dict]:
    """The same load on the CSMS and on the baseline, one after the other; adds RSS per connection."""
    rows = []
    with csms(n, log_dir) as (web, _, url, _):
        rows.append({"system": f"csms (production){label}", **measure(web.pid, url, n, plan, ramp=ramp)})
    with baseline(log_dir) as (proc, url):
        rows.append(
            {"system": f"baseline (ocpp ChargePoint){label}", **measure(proc.pid, url, n, plan, ramp=ramp)}
        )
    for row in rows:
        row["rss_kb_per_connection"] = round(row["server_rss_mb"] * 1024 / n, 1)
    return rows


def scenario_gateway(n: int, seconds: float, log_dir: Path) -> list[dict]:
    """Closed loop, Heartbeat/MeterValues mix: msg/s and web-process CPU per round trip."""
    plan = {"mode": "closed", "rate": 1.0, "duration": seconds, "meter_every": 5, "timeout": 30.0}
    return side_by_side(n, plan, log_dir, ramp=5)


def scenario_stack_floor(n: int, seconds: float, log_dir: Path) -> list[dict]:
    """The gateway load on the bare stack (flask-sock on gevent answering fixed replies) beside the
    baseline: the CPU per round trip no gateway on this stack can go below."""
    plan = {"mode": "closed", "rate": 1.0, "duration": seconds, "meter_every": 5, "timeout": 30.0}
    rows = []
    with stack_floor(log_dir) as (proc, url):
        rows.append({"system": "flask-sock echo (floor)", **measure(proc.pid, url, n, plan, ramp=5)})
    with baseline(log_dir) as (proc, url):
        rows.append({"system": "baseline (ocpp ChargePoint)", **measure(proc.pid, url, n, plan, ramp=5)})
    return rows


def scenario_fixed_rate(n: int, seconds: float, log_dir: Path) -> list[dict]:
    """Every charger sends one message a second: latency percentiles at a steady load."""
    plan = {"mode": "rate", "rate": 1.0, "duration": seconds, "meter_every": 5, "timeout": 30.0}
    return side_by_side(n, plan, log_dir, ramp=5)


def scenario_connections(n: int, seconds: float, log_dir: Path) -> list[dict]:
    """Many concurrent authenticated chargers, each a heartbeat every n/1000 s (1,000 msg/s in all),
    on the CSMS (`connections_at`) and then on the baseline."""
    rows = connections_at(n, seconds, log_dir)
    with baseline(log_dir) as (proc, url):
        plan = connections_plan(n, seconds)
        result = measure(proc.pid, url, n, plan, ramp=connections_ramp(n))
    result["rss_kb_per_connection"] = round(result["server_rss_mb"] * 1024 / n, 1)
    return [*rows, {"system": "baseline (ocpp ChargePoint)", **result}]


def connections_at(n: int, seconds: float, log_dir: Path) -> list[dict]:
    """`n` chargers held by one web process (the CSMS alone) at 1,000 Heartbeats a second in all:
    its RSS, the Heartbeat p99 (targets at 15,000: 1 GB, 50 ms) and the most files it had open at once
    (one per charger, and its own). A part other scenarios run too."""
    note_open_files(n)
    with csms(n, log_dir) as (web, _, url, _), OpenFilesPeak(web.pid) as most:
        result = measure(web.pid, url, n, connections_plan(n, seconds), ramp=connections_ramp(n))
    result["rss_kb_per_connection"] = round(result["server_rss_mb"] * 1024 / n, 1)
    result["web_open_files_max"] = most.peak
    return [{"system": "csms (production, 1 web process)", **result}]


def connections_plan(n: int, seconds: float) -> dict:
    """Each of `n` chargers a Heartbeat every n/1000 s: 1,000 msg/s in all."""
    return {"mode": "rate", "rate": 1000 / n, "duration": seconds, "meter_every": 0, "timeout": 60.0}


def connections_ramp(n: int) -> float:
    """Seconds over which `n` chargers connect: 500 a second, as chargers after a power cut might."""
    return max(10.0, n / 500)


def note_open_files(n: int) -> None:
    """Warn when the web process cannot hold `n` chargers: each costs it one open file, its socket
    (the simulator's processes, `n` / 2 each, stay within the same limit, raised by `main`)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < n + WEB_OTHER_FILES:
        print(
            f"note: the hard limit of open files ({hard}) leaves the web process room for about "
            f"{hard - WEB_OTHER_FILES} chargers; the others will fail to connect"
        )


WEB_OTHER_FILES = 100  # what the web process holds open besides its chargers (wsgi.OTHER_FILES)


class OpenFilesPeak:
    """The most files a process had open at once while in this context (sampled twice a second)."""

    def __init__(self, pid: int):
        self.pid = pid
        self.peak = 0
        self._done = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> OpenFilesPeak:
        self._sampler.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._sampler.join()

    def _sample(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, len(os.listdir(f"/proc/{self.pid}/fd")))
            self._done.wait(0.5)


PIPELINE_TARGET = 2000  # stored MeterValues per second the pipeline must sustain


def scenario_pipeline(n: int, seconds: float, log_dir: Path) -> list[dict]:
    """MeterValues into production mode with one worker, twice: in closed loop (the gateway answers
    as fast as it can and takes the CPU the worker would use) and at a fixed 2,000 messages a second
    offered (can one worker keep up with that?): stored/s, lag, and zero loss. The worker runs at the
    web process's priority here: storage throughput is what is measured (niced, it stores little
    until the closed loop stops)."""
    closed = {"mode": "closed", "rate": 1.0, "duration": seconds, "meter_every": 1, "timeout": 30.0}
    offered = {**closed, "mode": "rate", "rate": PIPELINE_TARGET / n}
    return [
        store_everything(n, closed, log_dir, "closed loop"),
        store_everything(n, offered, log_dir, f"{PIPELINE_TARGET:,} msg/s offered"),
    ]


def store_everything(n: int, plan: dict, log_dir: Path, label: str) -> dict:
    """Run the load, then wait until every answered message is stored (at most 10 minutes)."""
    with csms(n, log_dir, worker_niceness=0) as (web, worker, url, db_url):
        started = time.monotonic()
        worker_cpu = tree_cpu_seconds(worker.pid)
        result = measure(web.pid, url, n, plan, ramp=2)
        sent_done = time.monotonic()
        with psycopg.connect(db_url) as database:

            def stored() -> int:
                return database.execute(
                    "SELECT count(*) FROM ocpp_messages WHERE direction = 'in' AND message_type = 2"
                ).fetchone()[0]

            stored_while_sending = stored()
            deadline = sent_done + 600
            while stored() < result["answered"] and time.monotonic() < deadline:
                time.sleep(1)
            finished = time.monotonic()
            count = stored()
        worker_cpu = tree_cpu_seconds(worker.pid) - worker_cpu
    return {
        "system": f"csms, 1 worker, {label}",
        "answered": result["answered"],
        "stored": count,
        "lost": result["answered"] - count,
        "stored_per_second": round(count / (finished - started), 1),
        "stored_per_second_while_sending": round(stored_while_sending / (sent_done - started), 1),
        "lag_after_last_answer_s": round(finished - sent_done, 1),
        "gateway_messages_per_second": result["messages_per_second"],
        "web_cpu_us_per_message": result["cpu_us_per_round_trip"],
        "worker_cpu_us_per_stored": round(worker_cpu / max(count, 1) * 1e6, 1),
    }


def scenario_cost_curve(n: int, seconds: float, log_dir: Path) -> list[dict]:
    """CPU per message and memory per connection at 100, 1,000 and `n` chargers (1 msg/s each, at
    most 1,000 msg/s in all), CSMS and baseline."""
    rows = []
    for size in sorted({100, 1000, n}):
        plan = {
            "mode": "rate",
            "rate": min(1.0, 1000 / size),
            "duration": seconds,
            "meter_every": 5,
            "timeout": 60.0,
        }
        rows += side_by_side(size, plan, log_dir, ramp=max(5.0, size / 500), label=f" {size}")
    return rows


class Flooder:
    """One charger sending Heartbeats without waiting for its answers, as fast as its connection
    takes them, from a thread of the bench process: a raw socket, its frames made once in advance,
    its answers counted, not parsed (every server frame here is under 126 bytes)."""

    FRAMES = b"".join(
        b"\x81" + bytes((0x80 | len(text),)) + b"\0\0\0\0" + text  # masked with zeros: text as it is
        for text in (f'[2,"f{n}","Heartbeat",{{}}]'.encode() for n in range(1000))
    )

    def __init__(self, url: str, charge_point_id: str):
        self.sock, self.received = open_charger_socket(url, charge_point_id, KEY)
        self.answered = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        """Flood until `stop()`."""
        self.sock.settimeout(1.0)
        reader = threading.Thread(target=self._count_answers, daemon=True)
        reader.start()
        frames = memoryview(self.FRAMES)
        offset = 0
        while not self.stopped.is_set():
            try:
                offset = (offset + self.sock.send(frames[offset:])) % len(frames)
            except TimeoutError:  # paced: its connection takes nothing more for now
                continue
            except OSError:
                break
        reader.join(timeout=5)
        self.sock.close()

    def stop(self) -> None:
        self.stopped.set()

    def _count_answers(self) -> None:
        buffer = self.received
        while not self.stopped.is_set():
            position = 0
            while len(buffer) - position >= 2 and len(buffer) - position >= 2 + buffer[position + 1]:
                position += 2 + buffer[position + 1]
                self.answered += 1
            buffer = buffer[position:]
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            buffer += data


def scenario_flood(n: int, seconds: float, log_dir: Path) -> list[dict]:
    """`n` chargers sending a Heartbeat a second, and one more flooding Heartbeats without waiting
    for its answers: the fleet's Heartbeat latency with no flooder, with the per-charger limit off
    (`CSMS_CHARGER_RATE=0`) and with its default."""
    plan = {"mode": "rate", "rate": 1.0, "duration": seconds, "meter_every": 0, "timeout": 30.0}
    rows = []
    for label, settings in [
        ("no flooder", None),
        ("flooder, no limit", {"CSMS_CHARGER_RATE": "0"}),
        ("flooder, default limit", {}),
    ]:
        with csms(n + 1, log_dir, settings=settings) as (web, _, url, _):
            flooder = None if settings is None else Flooder(url, f"B-{n:05d}")
            if flooder is not None:
                threading.Thread(target=flooder.run, daemon=True).start()
            result = measure(web.pid, url, n, plan, ramp=2)
            if flooder is not None:
                flooder.stop()
            result["flooder_answered"] = flooder.answered if flooder is not None else None
        rows.append({"system": f"csms, {label}", **result})
    return rows


def scenario_dashboard(n: int, seconds: float, log_dir: Path) -> list[dict]:
    """The operator's pages with `n` chargers and a million samples, and the delay of a MeterValues
    to a dashboard's Socket.IO client at 1,000 msg/s (bench/dashboard.py)."""
    import dashboard

    return dashboard.scenario(n, seconds, log_dir, csms, measure, tree_cpu_seconds)


def scenario_dashboard_live(n: int, seconds: float, log_dir: Path) -> list[dict]:
    """The dashboard scenario's live part alone (1,000 chargers; `n` is not used): the delay of a
    MeterValues to an operator's Socket.IO client at 1,000 msg/s."""
    import dashboard

    return [dashboard.live_events(seconds, log_dir, csms, measure, tree_cpu_seconds)]


def scenario_cluster(n: int, seconds: float, log_dir: Path) -> list[dict]:
    """What several web nodes buy: first the `gateway` load on 2 web processes and on 1 in one run
    (bench/cluster.py, where the scenario's other figures go)."""
    import cluster

    return cluster.scenario(n, seconds, log_dir, sys.modules[__name__])


def scenario_smart_charging(n: int, seconds: float, log_dir: Path) -> list[dict]:
    """Sites of obedient chargers with arrivals and departures: reallocation latency, and the sums
    allowed and drawn over each site's limit (bench/smart_charging.py)."""
    import smart_charging

    return smart_charging.scenario(n, seconds, log_dir, csms, fleet)


SCENARIOS = {
    "gateway": (scenario_gateway, 1000, 20),
    "fixed-rate": (scenario_fixed_rate, 1000, 20),
    "connections": (scenario_connections, 10_000, 60),
    "pipeline": (scenario_pipeline, 200, 20),
    "cost-curve": (scenario_cost_curve, 10_000, 20),
    "stack-floor": (scenario_stack_floor, 1000, 20),
    "flood": (scenario_flood, 100, 20),
    "dashboard": (scenario_dashboard, 10_000, 20),
    "dashboard-live": (scenario_dashboard_live, 1000, 20),
    "cluster": (scenario_cluster, 1000, 20),
    "smart-charging": (scenario_smart_charging, 1000, 60),
}


def table(rows: list[dict]) -> str:
    """One column per row; a line for every figure any row has (a scenario's rows may measure
    different things, as `dashboard`'s pages and its live events)."""
    flat = [
        {
            **{k: v for k, v in r.items() if not isinstance(v, dict)},
            **{f"{k}.{s}": v for k in r if isinstance(r[k], dict) for s, v in r[k].items()},
        }
        for r in rows
    ]
    columns = list(dict.fromkeys(column for r in flat for column in r))
    width = max(len(c) for c in columns)
    lines = [f"{'':{width}}  " + "  ".join(f"{str(r['system'])[:28]:>28}" for r in flat)]
    for column in columns[1:]:
        lines.append(f"{column:{width}}  " + "  ".join(f"{r.get(column)!s:>28}" for r in flat))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenarios", nargs="*", metavar="scenario", help=f"any of {', '.join(SCENARIOS)}")
    parser.add_argument("--chargers", type=int, help="override the scenario's charger count")
    parser.add_argument("--seconds", type=float, help="override the scenario's duration")
    args = parser.parse_args()
    unknown = [name for name in args.scenarios if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))  # children inherit it
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name in args.scenarios or SCENARIOS:
        run, chargers, seconds = SCENARIOS[name]
        log_dir = RESULTS / name
        log_dir.mkdir(exist_ok=True)
        rows = run(args.chargers or chargers, args.seconds or seconds, log_dir)
        print(f"\n== {name} ({args.chargers or chargers} chargers, {args.seconds or seconds:g} s) ==")
        print(table(rows))
        (RESULTS / f"{name}.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
