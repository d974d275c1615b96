"""A web process holds a charger with one open file, its socket (simple-websocket under gevent would
work on a duplicate of it: two), and gives it back however the connection ends: a close from either
side, a subprotocol refused (1002), a frame over the limit (1009), a charger replaced by its newer
connection, a charger that takes nothing (cut off). None of these leaves the socket to gevent's HTTP
handler, which would read the charger's next bytes as a new request."""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import time

import pytest

from tests.support.deployment import AUTH_KEY, deployment
from tests.support.frames import client_frame, masked_text
from tests.support.processes import wait_until

pytestmark = pytest.mark.slow

CHARGERS = 200
# Files the web process may open or close meanwhile for its own needs (a database connection of
# the in-process worker's pool, say): a margin, far below one per charger.
SLACK = 8
MAX_FRAME = 1024


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def handshake(port: int, charge_point_id: str, subprotocol: str = "ocpp1.6") -> socket.socket:
    """An authenticated WebSocket upgrade, written by hand; returns the connected socket."""
    return upgrade(port, charge_point_id, subprotocol)[0]


def upgrade(port: int, charge_point_id: str, subprotocol: str) -> tuple[socket.socket, bytes]:
    """The socket of an accepted upgrade and what the server sent after its 101's headers."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    auth = base64.b64encode(f"{charge_point_id}:{AUTH_KEY}".encode()).decode()
    sock.sendall(
        (
            f"GET /ocpp/{charge_point_id} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {subprotocol}\r\n"
            f"Authorization: Basic {auth}\r\n\r\n"
        ).encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(4096)
        assert chunk, f"closed during the handshake: {response!r}"
        response += chunk
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock, response.split(b"\r\n\r\n", 1)[1]


def heartbeat(sock: socket.socket, unique_id: str) -> bytes:
    """Send a Heartbeat; the server's answer frame (one read: it is under a hundred bytes)."""
    sock.sendall(masked_text(f'[2,"{unique_id}","Heartbeat",{{}}]'))
    return sock.recv(4096)


def rest_after_close(sock: socket.socket) -> bytes:
    """Everything the server sends until it ends the connection, having been sent an HTTP request
    (which it must not answer: the connection was a WebSocket)."""
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
    except OSError:  # already reset: nothing more can come either
        return b""
    received = b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def close_frame(data: bytes) -> tuple[int, bytes]:
    """(status code, reason) of the server's close frame at the start of `data`."""
    assert data[0] == 0x88, data
    size = data[1]
    return int.from_bytes(data[2:4], "big"), data[4 : 2 + size]


@pytest.fixture
def csms(tmp_path, sqlite_template):
    ids = {f"FD-{n:03d}": AUTH_KEY for n in range(CHARGERS)}
    with deployment(
        "embedded",
        tmp_path,
        sqlite_template=sqlite_template,
        charge_points=ids,
        env={"CSMS_BOOT_CONFIGURATION": "", "CSMS_MAX_FRAME_BYTES": str(MAX_FRAME)},
    ) as running:
        # once, so the files the first connection opens for good (database, caches) are counted
        with handshake(running.web.port, "FD-000") as sock:
            assert heartbeat(sock, "warm-up").startswith(b"\x81")
        yield running


def settled(pid: int, expected: int) -> bool:
    return wait_until(lambda: abs(open_files(pid) - expected) <= SLACK, timeout=10)


def test_each_charger_costs_one_open_file_and_gives_it_back(csms):
    pid = csms.web.process.pid
    assert settled(pid, open_files(pid))
    before = open_files(pid)
    sockets = [handshake(csms.web.port, f"FD-{n:03d}") for n in range(CHARGERS)]
    try:
        for n, sock in enumerate(sockets):
            assert heartbeat(sock, f"hb-{n}").startswith(b"\x81")  # every one is served
        held = open_files(pid) - before
        assert CHARGERS - SLACK <= held <= CHARGERS + SLACK, f"{held} open files for {CHARGERS} chargers"
    finally:
        for sock in sockets[: CHARGERS // 2]:  # half say goodbye with a close frame,
            sock.sendall(client_frame(0x88, (1000).to_bytes(2, "big")))
            assert close_frame(sock.recv(4096))[0] == 1000
            assert rest_after_close(sock) == b""
            sock.close()
        for sock in sockets[CHARGERS // 2 :]:  # the others just go
            sock.close()
    assert settled(pid, before), f"{open_files(pid) - before} open files left over"


def test_every_way_a_connection_ends_gives_its_file_back(csms):
    pid = csms.web.process.pid
    port = csms.web.port
    assert settled(pid, open_files(pid))
    before = open_files(pid)
    for round_ in range(20):
        # 1002: the charger offered no OCPP 1.6
        sock, sent = upgrade(port, "FD-001", subprotocol="chat")
        with sock:
            assert close_frame(sent or sock.recv(4096)) == (1002, b"subprotocol ocpp1.6 required")
            assert rest_after_close(sock) == b""
        # 1009: a frame over CSMS_MAX_FRAME_BYTES
        with handshake(port, "FD-002") as sock:
            sock.sendall(masked_text("x" * (MAX_FRAME + 1)))
            assert close_frame(sock.recv(4096))[0] == 1009
            assert rest_after_close(sock) == b""
        # replaced: the same charger connects again, its older connection is closed
        old = handshake(port, "FD-003")
        with handshake(port, "FD-003") as new:
            code, reason = close_frame(old.recv(4096))
            assert (code, reason) == (1000, b"replaced by a newer connection")
            assert rest_after_close(old) == b""
            old.close()
            assert heartbeat(new, f"new-{round_}").startswith(b"\x81")
    assert settled(pid, before), f"{open_files(pid) - before} open files left over"


def test_a_charger_that_takes_nothing_is_cut_off_and_gives_its_file_back(tmp_path, sqlite_template):
    with deployment(
        "embedded",
        tmp_path,
        sqlite_template=sqlite_template,
        charge_points={"STUCK-1": AUTH_KEY},
        # unpaced, so its Heartbeats are answered as fast as they come and the answers back up soon
        env={"CSMS_BOOT_CONFIGURATION": "", "CSMS_PING_INTERVAL": "1", "CSMS_CHARGER_RATE": "0"},
    ) as running:
        pid = running.web.process.pid
        before = open_files(pid)
        sock = handshake(running.web.port, "STUCK-1")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        # Heartbeats without reading their answers: the server's writes back up until it cuts the
        # charger off (no close frame can get through), and keeps nothing of it
        sock.settimeout(0.5)
        frames = masked_text('[2,"x","Heartbeat",{}]') * 1000
        cut = False
        deadline = time.monotonic() + 30
        while not cut and time.monotonic() < deadline:
            try:
                sock.sendall(frames)
            except TimeoutError:
                continue  # the server is not reading either: wait for the cut
            except OSError:
                cut = True
        assert cut, "the server never cut the charger off"
        sock.close()
        assert settled(pid, before), f"{open_files(pid) - before} open files left over"
        assert "closing" in running.web.log()


def test_a_stopping_web_process_ends_its_chargers_connections(tmp_path, sqlite_template):
    with deployment(
        "embedded",
        tmp_path,
        sqlite_template=sqlite_template,
        charge_points={"STOP-1": AUTH_KEY, "STOP-2": AUTH_KEY},
        env={"CSMS_BOOT_CONFIGURATION": ""},
    ) as running:
        sockets = [handshake(running.web.port, charge_point_id) for charge_point_id in ("STOP-1", "STOP-2")]
        assert all(heartbeat(sock, "before").startswith(b"\x81") for sock in sockets)
        running.web.process.terminate()
        running.web.process.wait(timeout=15)  # raises if it is still running then
        for sock in sockets:
            with sock, contextlib.suppress(ConnectionResetError):
                assert sock.recv(4096) == b""  # over (a timeout, if it were left open, fails)
