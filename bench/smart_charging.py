"""The `smart-charging` scenario: sites that never exceed their grid connection, under arrivals and
departures (csms.services.load_management).

`n / PER_SITE` sites of `PER_SITE` obedient chargers each (csms.sim.obedient: they apply the profiles they
receive and draw what those allow), each site limited to `SITE_LIMIT_A` per phase, each charger to
`CHARGER_MAX_A`. Once every charger has its TxDefaultProfile, cars arrive at random chargers over the
first two thirds of the run and leave after a random stay, so each site's shares change many times.

Three figures:
- reallocation latency: from the moment a charger starts or stops a transaction to the end of the
  reallocation that first saw it (its last profile answered: the site's `raised` or `lowered`
  record), p50 / p99 / max, target p99 <= 2 s;
- the highest (sum allowed / limit) of any site at any recorded instant (load_changes), target <= 1;
- the highest (sum drawn / limit) of any site, sampled every 100 ms at the chargers themselves (what
  the simulated cars draw under the profiles they hold), target <= 1.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from csms.sim.obedient import ObedientCharger

PER_SITE = 10
SITE_LIMIT_A = 63  # per phase: four cars at the chargers' full 16 A would not fit
CHARGER_MAX_A = 16
ARRIVING = 0.8  # share of the chargers that get a car during the run
TAG = "BENCH-SMART"
WORKER_PROCESSES = 2  # the Procfile's


class TimedCharger(ObedientCharger):
    """An obedient charger that notes when it starts and stops its transactions."""

    def __init__(self, *args, events: list, **kwargs):
        super().__init__(*args, **kwargs)
        self.events = events

    async def _start(self, connector, id_tag):
        self.events.append((time.time(), self.charge_point_id, "start"))
        await super()._start(connector, id_tag)

    async def _stop(self, connector, reason):
        if connector.transaction_id is not None:
            self.events.append((time.time(), self.charge_point_id, "stop"))
        await super()._stop(connector, reason)


def prepare(url: str, chargers: list[str]) -> dict[str, int]:
    """Sites, their chargers and a tag per car (a tag's second transaction would be refused,
    ConcurrentTx); returns each charger's site."""
    per_site = PER_SITE
    site_of = {}
    with psycopg.connect(url, autocommit=True) as connection:
        with connection.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO id_tags (id_tag, status, updated_at) VALUES (%s, 'Accepted', now())",
                [(f"{TAG}-{charger}",) for charger in chargers],
            )
        for site in range(len(chargers) // PER_SITE):
            row = connection.execute(
                "INSERT INTO stations (name, max_current_a, strategy, created_at, updated_at)"
                " VALUES (%s, %s, 'equal', now(), now()) RETURNING id",
                (f"bench site {site}", SITE_LIMIT_A),
            ).fetchone()
            members = chargers[site * per_site : (site + 1) * per_site]
            connection.execute(
                "UPDATE charge_points SET station_id = %s, max_current_a = %s"
                " WHERE charge_point_id = ANY(%s)",
                (row[0], CHARGER_MAX_A, members),
            )
            site_of.update(dict.fromkeys(members, row[0]))
    return site_of


def scenario(n: int, seconds: float, log_dir: Path, csms, fleet) -> list[dict]:
    settings = {"CSMS_BOOT_CONFIGURATION": "MeterValueSampleInterval=10", "CSMS_LOAD_CALL_TIMEOUT": "5"}
    # The Procfile's two worker processes at the web process's priority: the reallocations they run
    # are what is measured (niced behind the simulated chargers, one process, they waited seconds
    # for the CPU).
    workers = {"worker_niceness": 0, "worker_processes": WORKER_PROCESSES}
    with csms(n, log_dir, settings=settings, **workers) as (_web, _worker, ws_url, url):
        ids = [charge_point_id for charge_point_id, _ in fleet(n)]
        site_of = prepare(url, ids)
        events: list[tuple[float, str, str]] = []
        sims = [
            TimedCharger(cp, key, ws_url, connectors=1, max_current_a=CHARGER_MAX_A, events=events)
            for cp, key in fleet(n)
        ]
        loop = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, daemon=True).start()
        for sim in sims:
            asyncio.run_coroutine_threadsafe(sim.run(), loop)
        ready = _wait(lambda: all(sim.profiles for sim in sims), 300)
        missing = sum(1 for sim in sims if not sim.profiles)
        began = time.time()
        drawn = asyncio.run_coroutine_threadsafe(_drive(sims, seconds, site_of), loop).result(seconds + 120)
        time.sleep(5)  # the last departures' reallocations
        loop.call_soon_threadsafe(lambda: [task.cancel() for task in asyncio.all_tasks(loop)])
        with psycopg.connect(url) as connection:
            changes = connection.execute(
                'SELECT station_id, at, event, "limit", allowed_sum FROM load_changes'
                " WHERE at >= %s ORDER BY id",
                (datetime.fromtimestamp(began, UTC),),
            ).fetchall()
            sent = connection.execute(
                "SELECT count(*) FROM command_audit"
                " WHERE action = 'SetChargingProfile' AND requested_at >= %s",
                (datetime.fromtimestamp(began, UTC),),
            ).fetchone()[0]
    latencies = _latencies(events, site_of, changes)
    ratios = [allowed / limit for _, _, _, limit, allowed in changes if limit]
    ordered = sorted(latencies)
    return [
        {
            "system": "csms smart charging",
            "sites": n // PER_SITE,
            "chargers": n,
            "all_tx_default_s": round(ready, 1),
            "tx_default_missing": missing,
            "transactions_started": sum(1 for e in events if e[2] == "start"),
            "transactions_stopped": sum(1 for e in events if e[2] == "stop"),
            "reallocations": sum(1 for c in changes if c[2] == "decided"),
            "profiles_sent": sent,
            "latency_s_p50": round(ordered[len(ordered) // 2], 3) if ordered else None,
            "latency_s_p99": round(ordered[int(len(ordered) * 0.99)], 3) if ordered else None,
            "latency_s_max": round(ordered[-1], 3) if ordered else None,
            "events_unmatched": len(events) - len(latencies),
            "max_allowed_over_limit": round(max(ratios, default=0), 4),
            "max_drawn_over_limit": round(drawn, 4),
        }
    ]


def _wait(predicate, seconds: float) -> float:
    """Seconds until `predicate` held, or `seconds` (the run goes on: a charger without its
    TxDefaultProfile is counted at its maximum, and the figures say how many)."""
    started = time.monotonic()
    while not predicate() and time.monotonic() - started < seconds:
        time.sleep(0.5)
    return time.monotonic() - started


async def _drive(sims: list[TimedCharger], seconds: float, site_of: dict[str, int]) -> float:
    """Arrivals over the first two thirds, each staying a random while; returns the highest sum
    drawn over a site's limit seen while sampling every 100 ms."""
    rng = random.Random(20)
    plan = []
    for sim in rng.sample(sims, int(len(sims) * ARRIVING)):
        arrive = rng.uniform(0, seconds * 2 / 3)
        plan.append((arrive, sim, min(seconds, arrive + rng.uniform(seconds / 6, seconds / 2))))

    async def visit(arrive: float, sim: TimedCharger, leave: float) -> None:
        await asyncio.sleep(arrive)
        await sim._start(sim.sockets[0], f"{TAG}-{sim.charge_point_id}")
        await asyncio.sleep(leave - arrive)
        await sim._stop(sim.sockets[0], "EVDisconnected")

    visits = [asyncio.create_task(visit(*item)) for item in plan]
    highest = 0.0
    deadline = asyncio.get_running_loop().time() + seconds + 5
    while asyncio.get_running_loop().time() < deadline:
        drawn: dict[int, float] = defaultdict(float)
        for sim in sims:
            drawn[site_of[sim.charge_point_id]] += sim.drawn_a(sim.sockets[0])
        highest = max(highest, max(drawn.values(), default=0) / SITE_LIMIT_A)
        await asyncio.sleep(0.1)
    await asyncio.gather(*visits, return_exceptions=True)
    return highest


def _latencies(events, site_of: dict[str, int], changes) -> list[float]:
    """For each start or stop, the time to the end of its site's first reallocation decided after
    it (the end: its last record before the site's next decision)."""
    runs: dict[int, list[tuple[float, float]]] = defaultdict(list)  # site -> [(decided, ended)]
    for station_id, at, event, _limit, _allowed in changes:
        stamp = at.timestamp()
        if event == "decided":
            runs[station_id].append((stamp, stamp))
        elif runs[station_id]:
            decided, _ = runs[station_id][-1]
            runs[station_id][-1] = (decided, stamp)
    latencies = []
    for at, charge_point_id, _kind in events:
        after = [run for run in runs[site_of[charge_point_id]] if run[0] >= at]
        if after:
            latencies.append(after[0][1] - at)
    return latencies
