"""Connection-level behaviour of the gateway (embedded mode): auto-registration of unknown chargers,
TLS (security profile 2), the ping/pong keepalive, WebSocket frames of every kind on the wire,
replaced connections, and bounded memory under a flood of bad frames."""

from __future__ import annotations

import base64
import os
import socket
import ssl
import subprocess
import time

import pytest
from sqlalchemy import text
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import connect

from tests.support.chargers import RawCharger, basic_auth
from tests.support.deployment import AUTH_KEY, deployment
from tests.support.frames import client_frame, masked_text
from tests.support.processes import wait_until

pytestmark = pytest.mark.slow


def test_auto_register_creates_a_pending_charger_until_an_operator_accepts(tmp_path, sqlite_template):
    with deployment(
        "embedded", tmp_path, sqlite_template=sqlite_template, env={"CSMS_AUTO_REGISTER": "true"}
    ) as csms:
        with RawCharger(csms.ws_url, "NEW-1", "brand-new-key-123456") as raw:
            assert raw.boot()[2]["status"] == "Pending"
            assert raw.call("Heartbeat", {}, "hb")[2] == "SecurityError"
        assert (
            csms.scalar("SELECT registration_status FROM charge_points WHERE charge_point_id='NEW-1'")
            == "Pending"
        )
        with pytest.raises(InvalidStatus) as refused:  # the key it first presented is now its key
            RawCharger(csms.ws_url, "NEW-1", "another-key-1234567")
        assert refused.value.response.status_code == 401
        with pytest.raises(InvalidStatus) as refused:  # auto-registration still needs credentials
            RawCharger(csms.ws_url, "NEW-2", None)
        assert refused.value.response.status_code == 401

        with csms.engine.begin() as connection:  # the operator accepts it
            connection.execute(
                text("UPDATE charge_points SET registration_status='Accepted' WHERE charge_point_id='NEW-1'")
            )
        with RawCharger(csms.ws_url, "NEW-1", "brand-new-key-123456") as raw:
            assert raw.boot()[2]["status"] == "Accepted"
            assert raw.call("Heartbeat", {}, "hb")[0] == 3


@pytest.fixture
def certificate(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_tls_security_profile_2(tmp_path, sqlite_template, certificate):
    cert, key = certificate
    with deployment(
        "embedded",
        tmp_path,
        sqlite_template=sqlite_template,
        charge_points={"TLS-1": AUTH_KEY},
        security_profiles={"TLS-1": 2},  # wants TLS: served by the web process itself here
        env={"CSMS_TLS_CERT": str(cert), "CSMS_TLS_KEY": str(key)},
    ) as csms:
        context = ssl.create_default_context(cafile=str(cert))
        url = f"wss://127.0.0.1:{csms.web.port}/ocpp/TLS-1"
        with connect(
            url, ssl=context, subprotocols=["ocpp1.6"], additional_headers=basic_auth("TLS-1", AUTH_KEY)
        ) as ws:
            ws.send('[2,"1","Heartbeat",{}]')
            assert ws.recv(timeout=5).startswith('[3,"1",{"currentTime"')
        with pytest.raises(InvalidHandshake):  # plain ws:// is not served on a TLS port
            RawCharger(csms.ws_url, "TLS-1", AUTH_KEY)


def _handshake(port: int, charge_point_id: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    auth = base64.b64encode(f"{charge_point_id}:{AUTH_KEY}".encode()).decode()
    sock.sendall(
        (
            f"GET /ocpp/{charge_point_id} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ocpp1.6\r\n"
            f"Authorization: Basic {auth}\r\n\r\n"
        ).encode()
    )
    assert sock.recv(4096).startswith(b"HTTP/1.1 101")
    return sock


def test_a_charger_that_stops_answering_pings_is_disconnected(tmp_path, sqlite_template):
    with deployment(
        "embedded",
        tmp_path,
        sqlite_template=sqlite_template,
        charge_points={"PING-1": AUTH_KEY},
        env={"CSMS_PING_INTERVAL": "1"},
    ) as csms:
        sock = _handshake(csms.web.port, "PING-1")  # a peer that never answers a ping
        started = time.monotonic()
        received = b""
        while chunk := sock.recv(4096):
            received += chunk
        elapsed = time.monotonic() - started
        assert received[0] == 0x89  # a ping first,
        assert b"\x88" in received and b"Ping/Pong timeout" in received  # then a close (1008)
        assert 1.5 < elapsed < 5


def _server_frames(sock: socket.socket, count: int) -> list[tuple[int, bytes]]:
    """The next `count` frames the CSMS sends, as (first byte, payload); they are never masked."""
    received, frames = b"", []
    while len(frames) < count:
        while len(received) < 2 or len(received) < _frame_end(received):
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after {frames}"
            received += chunk
        end = _frame_end(received)
        frames.append((received[0], received[end - (received[1] & 0x7F) : end]))  # short frames only
        received = received[end:]
    return frames


def _frame_end(data: bytes) -> int:
    size = data[1] & 0x7F
    assert size < 126, "the replies here are short"
    return 2 + size


def _heartbeat(unique_id: str) -> bytes:
    return masked_text(f'[2,"{unique_id}","Heartbeat",{{}}]')


def test_every_kind_of_frame_on_one_connection(tmp_path, sqlite_template):
    """Plain frames, pings between them, bytes split anywhere, then a fragmented message (from which
    on the connection is read through wsproto); then, each on a new connection, frames that close it."""
    with deployment(
        "embedded", tmp_path, sqlite_template=sqlite_template, charge_points={"WIRE-1": AUTH_KEY}
    ) as csms:
        sock = _handshake(csms.web.port, "WIRE-1")
        sock.sendall(_heartbeat("a") + client_frame(0x89, b"ping!") + _heartbeat("b"))
        frames = _server_frames(sock, 3)
        assert frames[0][0] == 0x81 and frames[0][1].startswith(b'[3,"a",{"currentTime":')
        assert frames[1] == (0x8A, b"ping!")  # the pong, between the two answers
        assert frames[2][0] == 0x81 and frames[2][1].startswith(b'[3,"b",')

        wire = _heartbeat("c") + _heartbeat("d")
        for i in range(len(wire)):  # a byte at a time
            sock.sendall(wire[i : i + 1])
        assert [payload[:7] for _, payload in _server_frames(sock, 2)] == [b'[3,"c",', b'[3,"d",']

        first, rest = b'[2,"e","Heartbeat"', b",{}]"
        sock.sendall(client_frame(0x01, first) + client_frame(0x80, rest) + _heartbeat("f"))
        assert [payload[:7] for _, payload in _server_frames(sock, 2)] == [b'[3,"e",', b'[3,"f",']
        sock.close()

        for frame, code in [
            (client_frame(0x81, b'[2,"g","Heartbeat",{"x":"\xff"}]'), 1007),  # text that is not UTF-8
            (client_frame(0x81, b'[2,"h","Heartbeat",{}]', masked=False), 1002),  # a client must mask
            (client_frame(0x81, b"[]", length_bytes=2), 1002),  # a length not in its shortest form
        ]:
            sock = _handshake(csms.web.port, "WIRE-1")  # each on a new connection, read the plain way
            sock.sendall(_heartbeat("i") + frame)
            (_, answer), (first_byte, payload) = _server_frames(sock, 2)
            assert answer.startswith(b'[3,"i",')
            assert first_byte == 0x88 and int.from_bytes(payload[:2], "big") == code
            sock.close()


def test_a_charger_using_compression_is_served(tmp_path, sqlite_template):
    with (
        deployment(
            "embedded", tmp_path, sqlite_template=sqlite_template, charge_points={"ZIP-1": AUTH_KEY}
        ) as csms,
        RawCharger(csms.ws_url, "ZIP-1", AUTH_KEY, compression="deflate") as charger,
    ):
        assert charger.ws.protocol.extensions, "permessage-deflate was negotiated"
        assert charger.boot()[2]["status"] == "Accepted"
        data = "compressible " * 300
        answer = charger.call("DataTransfer", {"vendorId": "v", "data": data})
        assert answer[0] == 3 and answer[2]["status"] == "Accepted"
        assert charger.call("Heartbeat", {})[0] == 3


def test_a_reconnecting_charger_replaces_its_old_connection(tmp_path, sqlite_template):
    with deployment(
        "embedded", tmp_path, sqlite_template=sqlite_template, charge_points={"RE-1": AUTH_KEY}
    ) as csms:
        old = RawCharger(csms.ws_url, "RE-1", AUTH_KEY)
        with RawCharger(csms.ws_url, "RE-1", AUTH_KEY) as new:
            assert new.boot()[2]["status"] == "Accepted"
            with pytest.raises(ConnectionClosed):  # the old one was closed by the CSMS
                old.call("Heartbeat", {})


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def test_a_flood_of_bad_frames_neither_grows_memory_nor_slows_others(tmp_path, sqlite_template):
    with deployment(
        "embedded",
        tmp_path,
        sqlite_template=sqlite_template,
        charge_points={"BAD-1": AUTH_KEY, "GOOD-1": AUTH_KEY},
        # the web process's memory while it takes them all; paced, they would wait in TCP buffers
        # (tests/test_gateway_fair_share.py)
        env={"CSMS_BOOT_CONFIGURATION": "", "CSMS_CHARGER_RATE": "0"},
    ) as csms:
        bad_frames = ["nonsense", "[2]", '{"x":1}', "[7]", '[3,"nobody",{}]', os.urandom(64)]
        with (
            RawCharger(csms.ws_url, "BAD-1", AUTH_KEY) as bad,
            RawCharger(csms.ws_url, "GOOD-1", AUTH_KEY) as good,
        ):
            for frame in bad_frames * 200:  # warm up allocator and caches
                bad.send(frame)
            good.call("Heartbeat", {})
            before = _rss_kib(csms.web.process.pid)
            for frame in bad_frames * 1500:  # 9,000 frames no one can answer
                bad.send(frame)
            started = time.monotonic()
            assert good.call("Heartbeat", {})[0] == 3
            assert time.monotonic() - started < 2.0  # the other charger is still served
            assert bad.call("Heartbeat", {})[0] == 3  # and so is the flooding one, once it behaves
            growth = _rss_kib(csms.web.process.pid) - before
        assert growth < 10_000, f"RSS grew by {growth} KiB"
        assert wait_until(lambda: "dropped a frame" in csms.web.log(), timeout=5)
