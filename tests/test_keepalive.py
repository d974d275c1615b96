"""The keepalive that replaces simple-websocket's reader-per-connection pings: each connection is
pinged once per interval from its own start, and one that did not answer the previous ping is
closed with 1008. (`test_gateway_connections` checks the same against a real silent peer.)"""

from __future__ import annotations

import threading

from wsproto.connection import Connection, ConnectionType
from wsproto.events import CloseConnection

from csms.ocpp import websocket
from csms.ocpp.websocket import WRITES_PER_TURN, Keepalive


class _Socket:
    def __init__(self):
        self.sent = b""

    def sendall(self, data: bytes) -> None:
        self.sent += data


class _WebSocket:
    def __init__(self):
        self.sock = _Socket()
        self.ws = Connection(ConnectionType.SERVER)  # wsproto's connection after the handshake
        self.connected = True
        self.pong_received = True


class _Session:
    def __init__(self, name: str, next_ping: float):
        self.charge_point_id = name
        self.next_ping = next_ping
        self.ws = _WebSocket()
        self.send_lock = threading.Lock()
        self.closed_with: tuple[int, str] | None = None

    def close(self, code: int, reason: str) -> None:
        self.closed_with = (code, reason)


def test_each_connection_is_pinged_when_its_own_interval_is_over():
    early, late = _Session("A", next_ping=100.0), _Session("B", next_ping=110.0)
    keepalive = Keepalive(30, lambda: [early, late])
    keepalive.sweep(now=105.0)
    assert early.ws.sock.sent == b"\x89\x00"  # an empty ping frame
    assert late.ws.sock.sent == b""
    assert early.next_ping == 135.0 and not early.ws.pong_received
    keepalive.sweep(now=111.0)
    assert late.ws.sock.sent == b"\x89\x00"


def test_a_connection_that_did_not_answer_is_closed_at_its_next_ping():
    answering, silent = _Session("A", 100.0), _Session("B", 100.0)
    keepalive = Keepalive(30, lambda: [answering, silent])
    keepalive.sweep(now=100.0)
    answering.ws.pong_received = True  # what simple-websocket's event handling does on a pong
    keepalive.sweep(now=130.0)
    assert answering.closed_with is None and answering.ws.sock.sent == b"\x89\x00" * 2
    assert silent.closed_with == (1008, "Ping/Pong timeout")
    assert silent.ws.sock.sent == b"\x89\x00"  # no second ping


def test_a_closed_connection_is_left_alone():
    session = _Session("A", 100.0)
    session.ws.connected = False
    Keepalive(30, lambda: [session]).sweep(now=200.0)
    assert session.ws.sock.sent == b"" and session.closed_with is None


def test_a_connection_closing_meanwhile_does_not_stop_the_sweep():
    closing, next_one = _Session("A", 100.0), _Session("B", 100.0)
    closing.ws.ws.send(CloseConnection(code=1000))  # its close went out; `connected` not yet False
    Keepalive(30, lambda: [closing, next_one]).sweep(now=100.0)
    assert closing.ws.sock.sent == b""
    assert next_one.ws.sock.sent == b"\x89\x00"  # the sweep went on to the next connection


def test_a_connection_whose_reply_is_being_written_is_left_to_the_next_tick():
    writing, next_one = _Session("A", 100.0), _Session("B", 100.0)
    writing.send_lock.acquire()  # a reply to a charger slow to read holds it
    Keepalive(30, lambda: [writing, next_one]).sweep(now=100.0)
    assert writing.ws.sock.sent == b"" and writing.next_ping == 100.0 and writing.ws.pong_received
    assert next_one.ws.sock.sent == b"\x89\x00"  # the sweep did not wait


def test_a_long_sweep_lets_the_chargers_in_between(monkeypatch):
    """Every `WRITES_PER_TURN` pings or closes the sweep sleeps (under gevent: lets the hub serve
    the chargers' messages meanwhile); connections it only looks at cost no turn."""
    turns = WRITES_PER_TURN
    due = [_Session(f"D{n}", 100.0) for n in range(2 * turns + 1)]
    later = [_Session(f"L{n}", 200.0) for n in range(3 * turns)]
    silent = _Session("S", 100.0)
    silent.ws.pong_received = False  # closed, not pinged: a write all the same
    sessions = [*later, *due[:turns], silent, *due[turns:]]
    pinged_when_sleeping = []

    def sleep(seconds: float) -> None:
        assert 0 < seconds < 0.001
        pinged_when_sleeping.append(sum(1 for session in due if session.ws.sock.sent))

    monkeypatch.setattr(websocket.time, "sleep", sleep)
    Keepalive(30, lambda: sessions).sweep(now=100.0)
    assert all(session.ws.sock.sent == b"\x89\x00" for session in due)
    assert silent.closed_with == (1008, "Ping/Pong timeout")
    assert pinged_when_sleeping == [turns, 2 * turns - 1]
