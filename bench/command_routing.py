"""Part of the `cluster` scenario: what a command costs when the REST request lands on another web
node than the one holding the charger's WebSocket.

Two web nodes (A and B) and a worker on one database and broker; one charger on node A answers every
call at once. An operator sends `ROUND_TRIPS` Reset commands one after the other, alternating between
node A (same node: the gateway calls the charger's session directly) and node B (cross-node: B looks
the holder up in PostgreSQL, sends the call to A's queue, A calls the charger and replies through
RabbitMQ). The figure is the time from the HTTP request to its whole answer, on keep-alive
connections over loopback, so both columns include the same HTTP, auth, audit hand-off and charger
work, and their difference is what routing adds.
"""

from __future__ import annotations

import http.client
import json
import socket
import statistics
import subprocess
import threading
import time
from pathlib import Path

from websockets.sync.client import connect

OPERATOR = ("bench-routing@example.test", "bench-routing-password")
CHARGER = "B-00000"
ROUND_TRIPS = 1000
WARM_UP = 50


class Rest:
    """An operator's keep-alive HTTP connection to one node. `http.client` writes a request's headers
    and its body in two segments: without TCP_NODELAY the body waits for the server's delayed ACK
    of the headers, 40 ms on Linux, which would hide what is measured."""

    def __init__(self, base_url: str):
        host, port = base_url.removeprefix("http://").split(":")
        self.connection = http.client.HTTPConnection(host, int(port), timeout=30)
        self.connection.connect()
        self.connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.token = ""

    def post(self, path: str, body: dict) -> tuple[int, dict]:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        self.connection.request("POST", path, json.dumps(body), headers)
        response = self.connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")

    def login(self) -> Rest:
        status, body = self.post("/api/auth/login", {"email": OPERATOR[0], "password": OPERATOR[1]})
        assert status == 200, body
        self.token = body["access_token"]
        return self


def answering_charger(ws_url: str, key: str, stop: threading.Event) -> threading.Thread:
    """A charger on `ws_url` that boots and then answers every CSMS call with Accepted at once."""
    import base64

    token = base64.b64encode(f"{CHARGER}:{key}".encode()).decode()
    ready = threading.Event()

    def run() -> None:
        with connect(
            f"{ws_url}/ocpp/{CHARGER}",
            subprotocols=["ocpp1.6"],
            additional_headers={"Authorization": f"Basic {token}"},
        ) as ws:
            ws.send(
                json.dumps(
                    [2, "boot", "BootNotification", {"chargePointVendor": "B", "chargePointModel": "M"}]
                )
            )
            while not stop.is_set():
                try:
                    frame = json.loads(ws.recv(timeout=0.5))
                except TimeoutError:
                    continue
                if frame[0] == 3 and frame[1] == "boot":
                    ready.set()
                elif frame[0] == 2:
                    ws.send(json.dumps([3, frame[1], {"status": "Accepted"}]))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    if not ready.wait(15):
        raise RuntimeError("the bench charger did not boot")
    return thread


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))], 2)


def round_trips(log_dir: Path, bench) -> list[dict]:
    """`bench` is bench/run.py (its `csms`, `csms_env`, `process`, `free_port`, `KEY`, `PYTHON`)."""
    with bench.csms(1, log_dir, settings={"CSMS_NODE_ID": "bench-a"}) as (_, _, ws_a, database_url):
        env = bench.csms_env(database_url, bench.free_port(), log_dir, {"CSMS_NODE_ID": "bench-b"})
        flask = [bench.PYTHON, "-m", "flask", "--app", "wsgi", "user", "add", OPERATOR[0]]
        subprocess.run(
            [*flask, "--password", OPERATOR[1], "--role", "operator"],
            cwd=bench.ROOT,
            env={**bench.os.environ, **env},
            check=True,
            capture_output=True,
        )
        port_b = int(env["CSMS_PORT"])
        with bench.process([bench.PYTHON, "wsgi.py"], env, log_dir / "web-b.log", port_b):
            stop = threading.Event()
            charger = answering_charger(ws_a, bench.KEY, stop)
            nodes = {
                "same node": Rest(ws_a.replace("ws://", "http://")).login(),
                "cross-node": Rest(f"http://127.0.0.1:{port_b}").login(),
            }
            timings: dict[str, list[float]] = {name: [] for name in nodes}
            failures = 0
            for n in range(WARM_UP + ROUND_TRIPS):
                for name, rest in nodes.items():
                    began = time.perf_counter()
                    status, _ = rest.post("/api/charger/reset", {"deviceId": CHARGER, "type": "Soft"})
                    elapsed = (time.perf_counter() - began) * 1000
                    failures += status != 200
                    if n >= WARM_UP:
                        timings[name].append(elapsed)
            stop.set()
            charger.join(timeout=5)
    row = {"system": f"Reset round trip over REST, {ROUND_TRIPS} each, alternating", "failures": failures}
    for name, values in timings.items():
        row[f"{name} p50/p99 ms"] = f"{percentile(values, 0.5)}/{percentile(values, 0.99)}"
    row["cross-node adds, p50 ms"] = round(
        statistics.median(timings["cross-node"]) - statistics.median(timings["same node"]), 2
    )
    row["cross-node adds, p99 ms"] = round(
        percentile(timings["cross-node"], 0.99) - percentile(timings["same node"], 0.99), 2
    )
    return [row]
