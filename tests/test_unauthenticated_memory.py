"""What unauthenticated clients can make a web node hold is bounded (issue #14, finding 4): handshakes
for unknown chargers, and idTags no charger should know, are remembered for a while and in a bounded
number, never for ever."""

from __future__ import annotations

import base64
import socket
import threading
import time
from pathlib import Path

import pytest
from werkzeug.datastructures import Authorization

from csms.expiring_cache import ExpiringCache
from csms.extensions import db
from csms.ocpp.gateway import ChargerAuthenticator, HandshakeRefused
from csms.services.authorization import IdTagCache
from tests.builders import a_charge_point
from tests.support.processes import web_process

KEY = "key-0123456789abcdef"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def basic(user: str, password: str = KEY) -> Authorization:
    return Authorization("basic", {"username": user, "password": password})


def test_the_cache_forgets_after_its_ttl_and_holds_at_most_its_size():
    clock = FakeClock()
    cache = ExpiringCache(max_entries=3, ttl=10, clock=clock)
    for n in range(5):
        cache.put(n, f"v{n}")
    assert len(cache) == 3
    assert [cache.get(n) for n in range(5)] == [None, None, "v2", "v3", "v4"]
    clock.now += 5
    cache.put(2, "again")  # a stored key starts its time again
    assert cache.replace(3, "replaced") and not cache.replace(0, "gone")
    clock.now += 5
    assert [cache.get(n) for n in (2, 3, 4)] == ["again", None, None]
    cache.put(9, "new")  # each store sweeps what expired
    assert len(cache) == 2


def test_ids_no_charger_can_have_are_refused_without_a_lookup(app):
    authenticator = ChargerAuthenticator(ttl=60, auto_register=True)
    for charge_point_id in ("A" * 4000, "x" * 49, "CP:1"):
        with pytest.raises(HandshakeRefused) as refused:
            authenticator.authenticate(charge_point_id, basic(charge_point_id))
        assert (refused.value.status, refused.value.code) == (404, "unknown_charge_point")
        assert "1 to 48 of A-Z a-z 0-9" in refused.value.message
    assert len(authenticator._unknown) == 0 and authenticator._records == {}


def test_unknown_chargers_are_remembered_in_a_bounded_number(app, monkeypatch):
    monkeypatch.setattr(ChargerAuthenticator, "UNKNOWN_MAX", 50)
    a_charge_point(charge_point_id="CP-KNOWN", auth_key=KEY)
    authenticator = ChargerAuthenticator(ttl=60, auto_register=False)
    authenticator.load_directory()
    for n in range(200):
        with pytest.raises(HandshakeRefused):
            authenticator.authenticate(f"NOBODY-{n}", basic(f"NOBODY-{n}"))
    assert len(authenticator._unknown) == 50
    assert set(authenticator._records) == {"CP-KNOWN"}
    assert authenticator.authenticate("CP-KNOWN", basic("CP-KNOWN")).charge_point_id == "CP-KNOWN"


def test_a_reload_drops_deleted_chargers(app):
    point = a_charge_point(charge_point_id="CP-GONE", auth_key=KEY)
    authenticator = ChargerAuthenticator(ttl=60, auto_register=False)
    authenticator.load_directory()
    authenticator.authenticate("CP-GONE", basic("CP-GONE"))
    db.session.delete(point)
    db.session.commit()
    authenticator.load_directory()  # as another node's delete is learnt
    assert authenticator._records == {} and authenticator._verified == {}
    with pytest.raises(HandshakeRefused) as refused:
        authenticator.authenticate("CP-GONE", basic("CP-GONE"))
    assert refused.value.status == 404


def test_ever_new_id_tags_fill_only_a_bounded_unknown_side(app, monkeypatch):
    monkeypatch.setattr(IdTagCache, "UNKNOWN_MAX", 20)
    cache = IdTagCache(ttl=60, max_entries=1000)
    for n in range(100):
        assert cache.info(f"NEW-{n}").status == "Invalid"
    assert (len(cache._unknown), len(cache._known)) == (20, 0)


def _handshake_request(charge_point_id: str) -> bytes:
    credentials = base64.b64encode(f"{charge_point_id}:{KEY}".encode()).decode()
    return (
        f"GET /ocpp/{charge_point_id} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ocpp1.6\r\n"
        f"Authorization: Basic {credentials}\r\n\r\n"
    ).encode()


def _read_response(stream) -> int:
    status = int(stream.readline().split()[1])
    length = 0
    while (line := stream.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    stream.read(length)
    return status


def _unknown_handshakes(port: int, prefix: str, count: int, connections: int = 4, batch: int = 50):
    """`count` upgrade requests for distinct unknown 4,000-character ids over `connections` keep-alive
    connections, `batch` requests pipelined at a time (one at a time, every answer would wait for a
    delayed ACK); returns the status codes seen."""
    statuses: list[int] = []

    def client(index: int) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            stream = sock.makefile("rb")
            numbers = range(index, count, connections)
            for start in range(0, len(numbers), batch):
                chunk = numbers[start : start + batch]
                ids = (f"{prefix}{n:08d}".ljust(4000, "A") for n in chunk)
                sock.sendall(b"".join(_handshake_request(charge_point_id) for charge_point_id in ids))
                statuses.extend(_read_response(stream) for _ in chunk)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return statuses


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.slow
def test_unknown_handshakes_leave_the_web_process_flat(sqlite_template, tmp_path):
    """Finding 4: each unknown 4,000-character chargePointId was kept for ever (+37 MB per 8,000)."""
    database = tmp_path / "csms.sqlite3"
    database.write_bytes(sqlite_template.read_bytes())
    env = {"CSMS_DATABASE_URL": f"sqlite:///{database}", "CSMS_INSTANCE_PATH": str(tmp_path)}
    with web_process(env, tmp_path) as web:
        assert set(_unknown_handshakes(web.port, "WARM", 2000)) == {404}
        before = _rss_kb(web.process.pid)
        started = time.monotonic()
        statuses = _unknown_handshakes(web.port, "LEAK", 20_000)
        elapsed = time.monotonic() - started
        after = _rss_kb(web.process.pid)
    assert len(statuses) == 20_000 and set(statuses) == {404}
    growth_mb = (after - before) / 1024
    print(f"20,000 unknown handshakes in {elapsed:.1f}s: RSS {before / 1024:.1f} -> {after / 1024:.1f} MB")
    assert growth_mb < 4, f"RSS grew by {growth_mb:.1f} MB"
