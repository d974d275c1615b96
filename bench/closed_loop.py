"""A closed-loop OCPP load as cheap as Python makes it, for figures that `csms-sim` would limit.

`csms-sim` is a faithful charger (the `websockets` client on asyncio, JSON parsed, every answer
checked): about 90 µs of CPU per round trip here, twice the web process's. On a 2-core machine
that runs the load beside the CSMS, it takes the core a second web process would need. This load
keeps only what the measure needs: each charger sends a Heartbeat (a MeterValues every
`meter_every`-th message, as `gateway` does) as soon as its previous message is answered, over a
raw socket, frames built by hand (masked with a zero key, so the text goes as it is), answers
counted, not parsed, one `selectors` loop per process, no boot, no transaction.

`drive()` connects every charger, lets the load run `warmup` seconds, then counts the answers of
`seconds` seconds while the caller samples CPU (`on_window(start, end)`).
"""

from __future__ import annotations

import base64
import multiprocessing
import selectors
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime


def open_charger_socket(
    url: str, charge_point_id: str, key: str, timeout: float = 10
) -> tuple[socket.socket, bytes]:
    """A blocking socket on which the OCPP WebSocket of `charge_point_id` is open (Basic auth), and
    the bytes that came after the server's 101 answer."""
    host, port = url.removeprefix("ws://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    token = base64.b64encode(f"{charge_point_id}:{key}".encode()).decode()
    sock.sendall(
        f"GET /ocpp/{charge_point_id} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ocpp1.6\r\n"
        f"Authorization: Basic {token}\r\n\r\n".encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        data = sock.recv(4096)
        if not data:
            raise RuntimeError(f"{charge_point_id}: the server closed the connection during the upgrade")
        response += data
    if not response.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"{charge_point_id} was refused: {response[:200]!r}")
    return sock, response.split(b"\r\n\r\n", 1)[1]


def client_frame(text: bytes, opcode: int = 0x1) -> bytes:
    """A masked client frame with a zero mask: the payload goes unchanged."""
    if len(text) < 126:
        header = bytes((0x80 | opcode, 0x80 | len(text)))
    else:
        header = bytes((0x80 | opcode, 0x80 | 126)) + len(text).to_bytes(2, "big")
    return header + b"\0\0\0\0" + text


def _messages(meter_every: int) -> list[bytes]:
    """The JSON of the messages each charger sends in turn, `@ID@` standing for the message id."""
    stamp = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z").encode()
    heartbeat = b'[2,"@ID@","Heartbeat",{}]'
    meter = (
        b'[2,"@ID@","MeterValues",{"connectorId":1,"meterValue":[{"timestamp":"' + stamp + b'",'
        b'"sampledValue":[{"value":"1000","measurand":"Energy.Active.Import.Register","unit":"Wh"}]}]}]'
    )
    if meter_every <= 0:
        return [heartbeat]
    return [heartbeat] * (meter_every - 1) + [meter]


class _Charger:
    __slots__ = ("buffer", "sent", "sent_at", "sock")

    def __init__(self, sock: socket.socket, buffer: bytes):
        self.sock = sock
        self.buffer = buffer
        self.sent = 0
        self.sent_at = 0.0


def _run(url, chargers, meter_every, ready, go, results) -> None:
    """One generator process: connect, report ready, then run the loop until the window closes."""
    messages = _messages(meter_every)
    selector = selectors.DefaultSelector()
    fleet = []
    for charge_point_id, key in chargers:
        sock, rest = open_charger_socket(url, charge_point_id, key)
        sock.setblocking(False)
        charger = _Charger(sock, rest)
        fleet.append(charger)
        selector.register(sock, selectors.EVENT_READ, charger)
    ready.put(len(fleet))
    window_start, window_end = go.get()
    answered = errors = closed = 0
    latencies: list[float] = []
    cpu_at_start: float | None = None

    def send_next(charger: _Charger) -> None:
        text = messages[charger.sent % len(messages)].replace(b"@ID@", b"%d" % charger.sent)
        charger.sent += 1
        charger.sent_at = time.monotonic()
        charger.sock.send(client_frame(text))

    for charger in fleet:
        send_next(charger)
    while True:
        now = time.time()
        if now >= window_end:
            break
        if cpu_at_start is None and now >= window_start:
            cpu_at_start = time.process_time()
        for key, _ in selector.select(timeout=0.2):
            charger = key.data
            try:
                data = charger.sock.recv(65536)
            except BlockingIOError:
                continue
            if not data:
                selector.unregister(charger.sock)
                closed += 1
                continue
            buffer = charger.buffer + data
            position = 0
            while len(buffer) - position >= 2:
                length = buffer[position + 1] & 0x7F
                header = 2
                if length == 126:
                    if len(buffer) - position < 4:
                        break
                    length = int.from_bytes(buffer[position + 2 : position + 4], "big")
                    header = 4
                end = position + header + length
                if end > len(buffer):
                    break
                opcode = buffer[position] & 0x0F
                payload = buffer[position + header : end]
                position = end
                if opcode == 0x9:  # ping: the server closes connections that do not answer
                    charger.sock.send(client_frame(payload, opcode=0xA))
                elif opcode == 0x1 and payload[:3] in (b"[3,", b"[4,"):
                    if time.time() >= window_start:
                        answered += 1
                        errors += payload[:3] == b"[4,"
                        latencies.append(time.monotonic() - charger.sent_at)
                    send_next(charger)
            charger.buffer = buffer[position:]
    cpu = time.process_time() - (cpu_at_start if cpu_at_start is not None else time.process_time())
    for charger in fleet:
        charger.sock.close()
    results.put(
        {"answered": answered, "errors": errors, "closed": closed, "latencies": latencies, "cpu": cpu}
    )


def drive(
    url: str,
    chargers: list[tuple[str, str]],
    seconds: float,
    *,
    meter_every: int = 5,
    processes: int = 1,
    warmup: float = 5.0,
    on_window: Callable[[float, float], dict] | None = None,
) -> dict:
    """Run the load; answered msg/s over the `seconds` after `warmup`, latency percentiles, and
    whatever `on_window(start, end)` (wall-clock bounds, called from this process while the load
    runs) returns under `window`. The generator's own CPU over the window is `generator_cpu_s`
    (approximately: the processes count it from their first look at the clock past `start`)."""
    context = multiprocessing.get_context("spawn")
    ready, results = context.Queue(), context.Queue()
    gos = [context.Queue() for _ in range(processes)]
    workers = [
        context.Process(target=_run, args=(url, chargers[i::processes], meter_every, ready, gos[i], results))
        for i in range(processes)
    ]
    for worker in workers:
        worker.start()
    connected = sum(ready.get(timeout=300) for _ in workers)
    start = time.time() + warmup
    end = start + seconds
    for go in gos:
        go.put((start, end))
    time.sleep(max(start - time.time(), 0))
    window = on_window(start, end) if on_window is not None else {}
    totals = [results.get(timeout=seconds + 120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    answered = sum(t["answered"] for t in totals)
    latencies = sorted(ms for t in totals for ms in t["latencies"])
    return {
        "chargers": connected,
        "seconds": seconds,
        "answered": answered,
        "answered_per_second": round(answered / seconds, 1),
        "errors": sum(t["errors"] for t in totals),
        "closed_by_server": sum(t["closed"] for t in totals),
        "latency_ms_p50": round(latencies[len(latencies) // 2] * 1000, 1) if latencies else None,
        "latency_ms_p99": round(latencies[int(len(latencies) * 0.99)] * 1000, 1) if latencies else None,
        "generator_cpu_s": round(sum(t["cpu"] for t in totals), 2),
        "window": window,
    }
