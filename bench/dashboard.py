"""The `dashboard` scenario: how fast the operator's pages answer with a large network in
PostgreSQL, and how long a MeterValues takes from a charger to a dashboard's Socket.IO client.

Pages: a fresh database with `chargers` registered gets a history written in SQL (a stopped
transaction per charger over the last 30 days, 100 register samples each: a million samples, a
running transaction with samples on one charger), then an operator signs in and asks for each page
`REPEATS` times in turn; the figure is the time from request to the whole answer on loopback.

Live events: 1,000 chargers send a MeterValues of their running transaction every second (1,000
msg/s) while an operator's Socket.IO client listens; each `meter:values` event carries the sample's
timestamp, which `csms-sim` sets when it sends, so the client's clock (the same machine's) gives the
delay from charger to browser: gateway, hand-off, RabbitMQ, the metering actor, the notification
actor, the Socket.IO message queue and the web process's relay.
"""

from __future__ import annotations

import http.cookiejar
import multiprocessing
import re
import statistics
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import psycopg

OPERATOR = ("bench-operator@example.test", "bench-operator-password")
REPEATS = 20
SAMPLES_PER_TRANSACTION = 100
LIVE_CHARGERS = 1000
# The live part's workers: the Procfile's `dramatiq ... --processes 2` (one process is one core at most).
WORKER_PROCESSES = 2


def _pages(running_charger: str, transaction_id: int) -> dict[str, str]:
    return {
        "overview": "/",
        "overview figures": "/dashboard/summary",
        "chargers": "/chargers",
        "chargers, search": "/chargers?q=B-0042",
        "chargers, faulted": "/chargers?status=Faulted",
        "charger page (running, chart)": f"/chargers/{running_charger}",
        "transactions": "/transactions",
        "transactions, by charger": f"/transactions?chargePointId={running_charger}",
        "transaction page (samples)": f"/transactions/{transaction_id}",
        "customers": "/customers",
        "analytics per day": "/analytics?groupBy=day",
        "analytics per charger": "/analytics?groupBy=chargePoint",
        "stations": "/stations",
    }


def seed_history(database_url: str) -> tuple[str, int, int]:
    """A month of history in SQL: returns the charger with a running transaction, that
    transaction's id and how many samples there are."""
    from werkzeug.security import generate_password_hash

    with psycopg.connect(database_url, autocommit=True) as db:
        db.execute(
            "INSERT INTO users (email, password_hash, role, created_at) VALUES (%s, %s, 'operator', now())",
            (OPERATOR[0], generate_password_hash(OPERATOR[1])),
        )
        db.execute(
            "UPDATE connectors SET status = (ARRAY['Available', 'Charging', 'Faulted', 'Unavailable',"
            " 'Available'])[1 + id % 5] WHERE connector_id > 0"
        )
        db.execute(
            """INSERT INTO transactions (charge_point_id, connector_id, id_tag, state, meter_start_wh,
                   meter_last_wh, meter_stop_wh, energy_wh, started_at, stopped_at, stop_reason,
                   created_at, updated_at)
               SELECT id, 1, 'TAG-' || id, 'stopped', 0, 10000, 10000, 10000,
                      now() - (id % 30) * interval '1 day' - interval '2 hours',
                      now() - (id % 30) * interval '1 day' - interval '1 hour', 'Local', now(), now()
               FROM charge_points"""
        )
        running = db.execute(
            """INSERT INTO transactions (charge_point_id, connector_id, id_tag, state, meter_start_wh,
                   meter_last_wh, started_at, created_at, updated_at)
               SELECT id, 1, 'TAG-RUNNING', 'started', 0, 5000, now() - interval '1 hour', now(), now()
               FROM charge_points WHERE charge_point_id = 'B-00042' RETURNING id"""
        ).fetchone()[0]
        db.execute(
            f"""INSERT INTO meter_samples (charge_point_id, connector_id, transaction_id, sampled_at,
                   measurand, phase, location, context, unit, value, raw_value)
               SELECT t.charge_point_id, 1, t.id, t.started_at + g * interval '36 seconds',
                      'Energy.Active.Import.Register', '', '', '', 'Wh', g * 100, (g * 100)::text
               FROM transactions t, generate_series(1, {SAMPLES_PER_TRANSACTION}) g"""
        )
        db.execute("ANALYZE")
        count = db.execute("SELECT count(*) FROM meter_samples").fetchone()[0]
    return "B-00042", running, count


class Browser:
    """An operator's browser as far as the server can tell: a cookie jar, a signed-in session."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def get(self, path: str) -> tuple[int, bytes]:
        with self.opener.open(self.base_url + path, timeout=60) as response:
            return response.status, response.read()

    def sign_in(self) -> None:
        _, page = self.get("/login")
        token = re.search(rb'name="csrf_token" value="([^"]+)"', page).group(1).decode()
        body = urllib.parse.urlencode({"email": OPERATOR[0], "password": OPERATOR[1], "csrf_token": token})
        with self.opener.open(self.base_url + "/login", data=body.encode(), timeout=60) as response:
            assert response.status == 200 and b"Overview" in response.read(), "sign-in failed"


def time_pages(base_url: str, pages: dict[str, str]) -> dict[str, dict[str, float]]:
    browser = Browser(base_url)
    browser.sign_in()
    timings: dict[str, list[float]] = {name: [] for name in pages}
    for _ in range(REPEATS):
        for name, path in pages.items():
            began = time.perf_counter()
            status, _ = browser.get(path)
            timings[name].append((time.perf_counter() - began) * 1000)
            assert status == 200, (path, status)
    return {
        name: {
            "p50_ms": round(statistics.median(values), 1),
            "p95_ms": round(sorted(values)[int(len(values) * 0.95) - 1], 1),
            "max_ms": round(max(values), 1),
        }
        for name, values in timings.items()
    }


def listen_for_meter_values(base_url: str, token: str) -> tuple[multiprocessing.Process, Callable[[], list]]:
    """An operator's Socket.IO client in a process of its own, collecting per `meter:values` event
    its sample's time and the seconds from it to the event's arrival. Its own process: a client
    sharing the driver's (and the simulator's) interpreter parses 2,000 packets a second (each event
    also comes as `notification`) beside them and becomes the bound it should measure. Returns the
    process and a function that stops it and gives the delays."""
    context = multiprocessing.get_context("spawn")
    results, sender = context.Pipe(duplex=False)
    ready, stop, heard = context.Event(), context.Event(), context.Value("l", 0, lock=False)
    listener = context.Process(
        target=_listen, args=(base_url, token, sender, ready, stop, heard), daemon=True
    )
    listener.start()
    if not ready.wait(30):
        listener.kill()
        raise RuntimeError("the dashboard's Socket.IO client did not connect")

    def finish() -> list:
        deadline = time.monotonic() + 60  # the last events on their way, if the pipeline lags
        while time.monotonic() < deadline:
            seen = heard.value
            time.sleep(2)
            if heard.value == seen:
                break
        stop.set()
        delays = results.recv() if results.poll(60) else []
        listener.join(10)
        return delays

    return listener, finish


def _listen(base_url: str, token: str, results, ready, stop, heard) -> None:
    """The asyncio client: the threading one starts a thread per packet and, at 2,000 packets a
    second, is the bound itself (its read loop busy, the server's queue to it growing until the
    server drops it for a missed ping)."""
    import asyncio

    import socketio

    delays: list[tuple[float, float]] = []

    async def listen() -> None:
        client = socketio.AsyncClient(reconnection=False)

        @client.on("meter:values")
        async def on_meter(event: dict) -> None:
            now = time.time()
            for sample in event.get("samples", [])[:1]:
                sampled = datetime.fromisoformat(sample["timestamp"].replace("Z", "+00:00")).timestamp()
                delays.append((sampled, now - sampled))
            heard.value += 1

        await client.connect(base_url, auth={"token": token}, transports=["websocket"], wait_timeout=10)
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.2)
        await client.disconnect()

    asyncio.run(listen())
    results.send(delays)


def tenths(values: list[float]) -> list[list[float]]:
    """The values in ten consecutive parts, in the order they came."""
    n = len(values)
    return [values[i * n // 10 : (i + 1) * n // 10] for i in range(10)] if n >= 10 else []


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] * 1000, 1)


def scenario(n: int, seconds: float, log_dir: Path, csms, measure, tree_cpu_seconds) -> list[dict]:
    """`csms`, `measure` and `tree_cpu_seconds` are bench/run.py's: a fresh production deployment, a
    driven load and a process tree's CPU time."""
    rows = []
    with csms(n, log_dir) as (_, _, url, database_url):
        base = url.replace("ws://", "http://")
        began = time.monotonic()
        running_charger, transaction_id, samples = seed_history(database_url)
        seeded = time.monotonic() - began
        pages = time_pages(base, _pages(running_charger, transaction_id))
        row = {"system": f"csms, {n:,} chargers, {samples:,} samples", "seed_s": round(seeded, 1)}
        row |= {f"{name} p50/p95 ms": f"{t['p50_ms']}/{t['p95_ms']}" for name, t in pages.items()}
        row["worst page p95 ms"] = max(t["p95_ms"] for t in pages.values())
        rows.append(row)
    rows.append(live_events(seconds, log_dir, csms, measure, tree_cpu_seconds))
    return rows


def live_events(seconds: float, log_dir: Path, csms, measure, tree_cpu_seconds) -> dict:
    """MeterValues from `LIVE_CHARGERS` chargers, a message a second each, to an operator's client."""
    # The worker at the web process's priority: its storage and notifications are what is measured.
    with csms(LIVE_CHARGERS, log_dir, worker_niceness=0, worker_processes=WORKER_PROCESSES) as (
        web,
        worker,
        url,
        database_url,
    ):
        from datetime import timedelta

        from csms.services import tokens

        with psycopg.connect(database_url, autocommit=True) as db:  # a token serves an existing account only
            operator_id = db.execute(
                "INSERT INTO users (email, password_hash, role, created_at)"
                " VALUES (%s, 'x', 'operator', now()) RETURNING id",
                (OPERATOR[0],),
            ).fetchone()[0]
        token = tokens.issue(
            tokens.Identity(operator_id, "operator"),
            "bench-secret-key-0123456789abcdef0123",
            timedelta(hours=1),
        )
        _, finish = listen_for_meter_values(url.replace("ws://", "http://"), token)
        plan = {"mode": "rate", "rate": 1.0, "duration": seconds, "meter_every": 1, "timeout": 30.0}
        worker_cpu = tree_cpu_seconds(worker.pid)
        began, began_at = time.monotonic(), time.time()
        result = measure(web.pid, url, LIVE_CHARGERS, plan, ramp=5)
        worker_share = (tree_cpu_seconds(worker.pid) - worker_cpu) / (time.monotonic() - began)
        heard = finish()  # (sampled at, delay) per event, in the order they came
        delays = [delay for _, delay in heard]
        # at 1,000 msg/s: every charger connected and sending, from the last StartTransaction
        # answered to the first StopTransaction (`steady` in bench/run.py)
        opened = began_at + (result["all_busy_after_s"] or 0)
        closed = began_at + (result["all_busy_until_s"] or float("inf"))
        steady = [delay for sampled, delay in heard if opened <= sampled <= closed]
        past_first_tenth = delays[len(delays) // 10 :]
        first, last = delays[: len(delays) // 10], delays[-(len(delays) // 10) :]
        return {
            "system": f"MeterValues to a dashboard, {LIVE_CHARGERS:,} msg/s",
            "steady answered/s": result["steady"]["answered_per_second"],
            "answered": result["answered"],
            "events received": len(delays),
            "worker CPU (cores)": round(worker_share, 2),
            "steady events": len(steady),
            "steady delay p50 ms": percentile(steady, 0.50),
            "steady delay p99 ms": percentile(steady, 0.99),
            "steady delay max ms": percentile(steady, 1.0),
            # the whole run but its first tenth (the figures of earlier runs): the connect ramp's
            # second half and the stops included
            "delay p50 ms": percentile(past_first_tenth, 0.50),
            "delay p99 ms": percentile(past_first_tenth, 0.99),
            "delay max ms": percentile(past_first_tenth, 1.0),
            # growing from the first tenth of the events to the last: the pipeline falls behind
            "delay p50 ms, first / last tenth": f"{percentile(first, 0.5)} / {percentile(last, 0.5)}",
            # where in the run the slow ones are: the connect storm, the steady part, the stops
            "delay p50 / p99 ms by tenth": " ".join(
                f"{percentile(part, 0.5):.0f}/{percentile(part, 0.99):.0f}" for part in tenths(delays)
            ),
        }
