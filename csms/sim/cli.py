"""`csms-sim`: simulate a fleet of OCPP 1.6J chargers against a CSMS and report what it measured.

    csms-sim --url ws://127.0.0.1:8080 --fleet fleet.csv --duration 30 --processes 2
    csms-sim --url ws://127.0.0.1:8080 --prefix SIM- --count 500 --key KEY --mode rate --rate 1

Chargers are split over `--processes` (one asyncio loop each, so the simulator itself is not the
bottleneck); each connects (spread over `--ramp` seconds), boots, starts a transaction, sends
Heartbeats with a MeterValues every `--meter-every` messages, in closed loop (next message as soon
as the answer came) or at a fixed `--rate` per charger, and stops its transaction at the end.

    csms-sim --obey                                   # the demo charger of `flask seed-demo`
    csms-sim --obey --prefix SIM- --chargers 5 --key KEY

With `--obey` the chargers do what the CSMS asks instead (`csms.sim.obedient`): a living network to
watch on the dashboard, until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import logging
import multiprocessing
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

from csms.config import Config
from csms.gc_policy import freeze_survivors
from csms.sim.charger import Plan, SimulatedCharger, Stats
from csms.sim.obedient import ObedientCharger

DEMO_CREDENTIALS = Path("instance") / "demo-credentials.json"


def load_fleet(path: Path) -> list[tuple[str, str]]:
    """`chargePointId,authKey` rows (the same file `flask charger import` takes)."""
    rows = []
    with open(path, newline="", encoding="utf-8-sig") as handle:
        for row in csv.reader(handle):
            if len(row) >= 2 and row[0].strip() and row[0].strip() != "chargePointId":
                rows.append((row[0].strip(), row[1].strip()))
    return rows


async def _run_chargers(chargers: list[tuple[str, str]], plan: Plan, ramp: float) -> Stats:
    stats = Stats()

    async def one(index: int, charge_point_id: str, key: str) -> None:
        if ramp:
            await asyncio.sleep(ramp * index / max(len(chargers), 1))
        await SimulatedCharger(charge_point_id, key, plan, stats).run()

    await asyncio.gather(*(one(i, cp, key) for i, (cp, key) in enumerate(chargers)))
    return stats


def _process(chargers: list[tuple[str, str]], plan: Plan, ramp: float, results) -> None:
    freeze_survivors(Config.GC_FULL_SECONDS)  # a collector pause here would count as the CSMS's latency
    results.put(asdict(asyncio.run(_run_chargers(chargers, plan, ramp))))


def _percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))], 3)


def report(stats: Stats, chargers: int, elapsed: float) -> dict:
    heartbeats = [
        ms
        for ms, action in zip(stats.latencies_ms, stats.answered_actions, strict=True)
        if action == "Heartbeat"
    ]
    return {
        "chargers": chargers,
        "seconds": round(elapsed, 2),
        "messages": stats.sent,
        "answered": len(stats.latencies_ms),
        "messages_per_second": round(len(stats.latencies_ms) / elapsed, 1) if elapsed else 0.0,
        "latency_ms": {
            "p50": _percentile(stats.latencies_ms, 0.50),
            "p99": _percentile(stats.latencies_ms, 0.99),
            "p99.9": _percentile(stats.latencies_ms, 0.999),
            "max": round(max(stats.latencies_ms), 3) if stats.latencies_ms else None,
            "mean": round(statistics.fmean(stats.latencies_ms), 3) if stats.latencies_ms else None,
        },
        "heartbeat_latency_ms": {
            "p50": _percentile(heartbeats, 0.50),
            "p99": _percentile(heartbeats, 0.99),
        },
        "connect_ms": {"p50": _percentile(stats.connect_ms, 0.5), "p99": _percentile(stats.connect_ms, 0.99)},
        "errors": stats.errors,
        "timeouts": stats.timeouts,
        "connect_failures": stats.connect_failures,
        "disconnects": stats.disconnects,
        "csms_calls_answered": stats.csms_calls,
    }


def simulate(
    chargers: list[tuple[str, str]],
    plan: Plan,
    *,
    processes: int = 1,
    ramp: float = 0.0,
    answer_times: bool = False,
) -> dict:
    """Run the fleet and return the report (see `report`); with `answer_times`, also the
    `time.monotonic()` of every answer (`answered_at`), its latency (`latencies_ms`) and its action
    (`answered_actions`), in the same order, to measure a part of the run."""
    processes = max(1, min(processes, len(chargers)))
    chunks = [chargers[i::processes] for i in range(processes)]
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    started = time.perf_counter()
    workers = [context.Process(target=_process, args=(chunk, plan, ramp, results)) for chunk in chunks]
    for worker in workers:
        worker.start()
    total = Stats()
    for _ in workers:
        total.merge(Stats(**results.get(timeout=plan.duration + ramp + 600)))
    for worker in workers:
        worker.join(timeout=30)
    result = report(total, len(chargers), time.perf_counter() - started)
    if answer_times:
        result["answered_at"] = total.answered_at
        result["latencies_ms"] = total.latencies_ms  # in the same order
        result["answered_actions"] = total.answered_actions  # in the same order
    return result


def obey(chargers: list[tuple[str, str]], url: str, duration: float | None) -> int:
    """Run obedient chargers (see `csms.sim.obedient`) until `duration` ends or Ctrl-C."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    until = f"for {duration:g} s" if duration else "until Ctrl-C"
    print(f"{len(chargers)} obedient charger(s) on {url} {until}: {', '.join(cp for cp, _ in chargers[:5])}")

    async def all_of_them() -> None:
        await asyncio.gather(*(ObedientCharger(cp, key, url).run(duration) for cp, key in chargers))

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(all_of_them())
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="csms-sim", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="ws://127.0.0.1:8080", help="the CSMS, without /ocpp/<id>")
    fleet = parser.add_mutually_exclusive_group()
    fleet.add_argument("--fleet", type=Path, help="CSV of chargePointId,authKey")
    fleet.add_argument("--prefix", help="charge point ids <prefix>0000.. (with --count and --key)")
    fleet.add_argument(
        "--demo",
        type=Path,
        nargs="?",
        const=DEMO_CREDENTIALS,
        help=f"the demo charger of `flask seed-demo`, from its credentials file (default {DEMO_CREDENTIALS})",
    )
    parser.add_argument("--count", "--chargers", type=int, default=10)
    parser.add_argument(
        "--obey",
        action="store_true",
        help="chargers that do what the CSMS asks (RemoteStart/Stop, every other action), until stopped",
    )
    parser.add_argument("--key", help="the authorization key shared by the --prefix chargers")
    parser.add_argument("--mode", choices=["closed", "rate"], default="closed")
    parser.add_argument("--rate", type=float, default=1.0, help="messages per second per charger (rate mode)")
    parser.add_argument(
        "--duration",
        type=float,
        help="seconds of traffic per charger (default 10; with --obey: until Ctrl-C)",
    )
    parser.add_argument("--ramp", type=float, default=0.0, help="seconds over which chargers connect")
    parser.add_argument("--meter-every", type=int, default=5, help="every n-th message is a MeterValues")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for an answer")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    if not (args.fleet or args.prefix or args.demo):
        if not args.obey:
            parser.error("one of --fleet, --prefix or --demo is required")
        args.demo = DEMO_CREDENTIALS
    if args.prefix and not args.key:
        parser.error("--prefix needs --key")
    if args.duration is None and not args.obey:
        args.duration = 10.0
    if (
        args.count < 1
        or (args.duration is not None and args.duration <= 0)
        or args.rate <= 0
        or args.processes < 1
    ):
        parser.error("--count, --duration, --rate and --processes must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.fleet:
        chargers = load_fleet(args.fleet)
        if not chargers:
            print(f"csms-sim: no chargers in {args.fleet}", file=sys.stderr)
            return 2
    elif args.demo:
        try:
            demo = json.loads(args.demo.read_text())
        except (OSError, ValueError) as exc:
            print(f"csms-sim: cannot read {args.demo} ({exc}); run `flask seed-demo` first", file=sys.stderr)
            return 2
        chargers = [(demo["charge_point_id"], demo["auth_key"])]
    else:
        chargers = [(f"{args.prefix}{n:04d}", args.key) for n in range(args.count)]
    if args.obey:
        return obey(chargers, args.url, args.duration)
    plan = Plan(args.url, args.mode, args.rate, args.duration, args.meter_every, args.timeout)
    result = simulate(chargers, plan, processes=args.processes, ramp=args.ramp)
    latency = result["latency_ms"]
    print(
        f"{result['chargers']} chargers, {result['seconds']} s: {result['answered']} answered "
        f"({result['messages_per_second']} msg/s); latency ms p50 {latency['p50']} p99 {latency['p99']} "
        f"p99.9 {latency['p99.9']}; errors {result['errors']}, timeouts {result['timeouts']}, "
        f"connect failures {result['connect_failures']}"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if not (result["timeouts"] or result["connect_failures"]) else 1


if __name__ == "__main__":
    sys.exit(main())
