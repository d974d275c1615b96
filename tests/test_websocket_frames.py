"""The gateway's own reading of plain WebSocket frames (`FrameSplitter`) and writing of text frames
(`text_frame`), checked against wsproto's: what the splitter decodes must be exactly what wsproto
would, and every frame it does not decode must reach wsproto unchanged and in order."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time

import gevent.socket
import pytest
from simple_websocket import ConnectionClosed, Server
from wsproto.frame_protocol import FrameProtocol, Opcode

from csms.ocpp.pacing import Pacer
from csms.ocpp.websocket import (
    FrameSplitter,
    NoReaderThread,
    messages,
    plain_frames,
    send_text,
    text_frame,
    write,
)
from tests.support.frames import MASK, client_frame, masked_text


def feed_all(splitter: FrameSplitter, *chunks: bytes) -> list[tuple]:
    return [item for chunk in chunks for item in splitter.feed(chunk)]


def test_whole_text_and_binary_frames_are_decoded_in_order():
    heartbeat = '[2,"1","Heartbeat",{}]'
    meter = '[2,"2","DataTransfer",{"vendorId":"é—✓","data":"' + "x" * 300 + '"}]'  # 16-bit length
    chunk = (
        masked_text(heartbeat)
        + client_frame(0x82, b"\x00\xff")
        + masked_text(meter)
        + client_frame(0x81, b"")
    )
    assert feed_all(FrameSplitter(65536), chunk) == [
        (heartbeat, None),
        (b"\x00\xff", None),
        (meter, None),
        ("", None),
    ]


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70_000])
def test_frames_arriving_in_pieces_are_kept_until_whole(size):
    message = "".join(chr(0x41 + i % 26) for i in range(size))
    wire = masked_text(message) + masked_text("next")
    splitter = FrameSplitter(1 << 20)
    step = 1 if size < 200 else 997
    received = feed_all(splitter, *(wire[i : i + step] for i in range(0, len(wire), step)))
    assert received == [(message, None), ("next", None)]
    assert not splitter.pending


@pytest.mark.parametrize("cut", range(1, 14))
def test_a_header_cut_anywhere_is_read_once_whole(cut):
    wire = masked_text("y" * 70_000)  # a 64-bit length: 14 bytes of header with the mask
    splitter = FrameSplitter(1 << 20)
    assert feed_all(splitter, wire[:cut], wire[cut:]) == [("y" * 70_000, None)]


def test_frames_made_by_wsproto_decode_as_wsproto_sends_them():
    protocol = FrameProtocol(client=True, extensions=[])
    messages = ["", '[2,"a","Heartbeat",{}]', "ü" * 70, "x" * 40_000]
    wire = b"".join(protocol.send_data(message, fin=True) for message in messages)
    wire += protocol.send_data(os.urandom(300), fin=True)
    received = feed_all(FrameSplitter(65536), wire)
    assert [message for message, _ in received[:4]] == messages
    assert len(received[4][0]) == 300 and received[4][1] is None


def test_control_frames_go_to_wsproto_whole_and_in_order():
    ping, pong = client_frame(0x89, b"are you there"), client_frame(0x8A, b"")
    close = client_frame(0x88, (1000).to_bytes(2, "big") + b"bye")
    splitter = FrameSplitter(65536)
    wire = masked_text("a") + ping + masked_text("b") + pong + close
    assert feed_all(splitter, wire[:5], wire[5:]) == [
        ("a", None),
        (None, ping),
        ("b", None),
        (None, pong),
        (None, close),
    ]
    assert not splitter.bypass  # control frames are wsproto's to answer, the next text is still ours


@pytest.mark.parametrize(
    "odd_frame",
    [
        pytest.param(client_frame(0x01, b"[2,") + client_frame(0x80, b'"1"]'), id="fragmented"),
        pytest.param(client_frame(0xC1, b"compressed?"), id="reserved bit"),
        pytest.param(client_frame(0x81, b"unmasked", masked=False), id="unmasked"),
        pytest.param(client_frame(0x83, b"opcode 3"), id="unknown opcode"),
        pytest.param(client_frame(0x81, b"\xc3\x28"), id="invalid UTF-8"),
        pytest.param(client_frame(0x89, b"p" * 126), id="control frame too long"),
        pytest.param(client_frame(0x09, b"p"), id="fragmented ping"),
        pytest.param(client_frame(0x81, b"hi", length_bytes=2), id="16-bit length for 2 bytes"),
        pytest.param(client_frame(0x81, b"h" * 200, length_bytes=8), id="64-bit length for 200 bytes"),
        pytest.param(client_frame(0x8A, b"", length_bytes=2), id="16-bit length for an empty pong"),
        pytest.param(bytes((0x81, 0xFF)) + (1 << 63).to_bytes(8, "big") + MASK, id="64-bit length, top bit"),
    ],
)
def test_from_a_frame_it_does_not_judge_everything_goes_to_wsproto_as_received(odd_frame):
    splitter = FrameSplitter(65536)
    later = masked_text("later")
    assert feed_all(splitter, masked_text("first") + odd_frame, later) == [
        ("first", None),
        (None, odd_frame),
        (None, later),
    ]
    assert splitter.bypass


def test_a_message_of_exactly_the_limit_is_decoded():
    splitter = FrameSplitter(4096)
    assert feed_all(splitter, masked_text("x" * 4096)) == [("x" * 4096, None)]
    assert not splitter.bypass


def test_a_message_over_the_limit_goes_to_wsproto_on_its_header_not_once_it_is_whole():
    splitter = FrameSplitter(4096)
    header = client_frame(0x81, b"x" * 5000)[:8]  # 2 + 2 length bytes + 4 mask bytes
    assert feed_all(splitter, header) == [(None, header)]
    assert splitter.bypass and not splitter.pending


def test_a_connection_with_an_extension_is_left_to_wsproto():
    splitter = FrameSplitter(65536, enabled=False)
    wire = masked_text("compressed or not, wsproto decides")
    assert feed_all(splitter, wire[:3], wire[3:]) == [(None, wire[:3]), (None, wire[3:])]


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 100_000])
def test_text_frames_are_the_bytes_wsproto_would_send(size):
    message = "é" * (size // 2) + "x" * (size % 2)
    assert text_frame(message) == FrameProtocol(client=False, extensions=[]).send_data(message, fin=True)
    assert Opcode(text_frame(message)[0] & 0x0F) is Opcode.TEXT


class _CongestedSocket:
    """A gevent socket (it has `_wait`) taking at most 10 bytes a write, as one with a nearly full
    send buffer may."""

    _wait = None

    def __init__(self):
        self.wire = bytearray()

    def send(self, data: bytes, flags: int = 0, timeout: float | None = None) -> int:
        self.wire += data[:10]
        return min(10, len(data))

    def sendall(self, data: bytes) -> None:
        self.wire += data


class _Connection:
    connected = True
    close_reason, close_message = 1000, ""

    def __init__(self):
        self.sock = _CongestedSocket()


def test_a_message_the_socket_takes_in_part_is_sent_whole():
    ws = _Connection()
    send_text(ws, "ü" * 300, plain=True, timeout=5)
    assert bytes(ws.sock.wire) == text_frame("ü" * 300)


def test_a_peer_that_reads_nothing_makes_the_write_time_out_instead_of_hanging():
    ours, theirs = gevent.socket.socketpair()  # gevent's sockets, as in the web process
    with ours, theirs:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            write(ours, b"x" * 50_000_000, timeout=0.3)  # more than both socket buffers hold
        assert 0.25 < time.monotonic() - started < 5


def test_nothing_is_sent_once_the_connection_is_over():
    ws = _Connection()
    ws.connected = False
    with pytest.raises(ConnectionClosed):
        send_text(ws, "late", plain=True)
    assert not ws.sock.wire


# --- messages(): the splitter in front of wsproto gives what wsproto alone gave ------------------


def _serve(wire: bytes, *, splitter: bool, limit: int = 4096) -> tuple[list, bytes]:
    """Run `messages()` on a simple-websocket `Server` over a socket pair, the client having sent
    `wire`: what it yields and what the server sent back. An extension offered (one wsproto does
    not know, so none is negotiated) leaves the connection to wsproto alone, as before the splitter."""
    server_end, client_end = socket.socketpair()
    with server_end, client_end:
        ws = _accept(server_end, client_end, splitter=splitter, limit=limit)
        assert plain_frames(ws) is splitter
        client_end.sendall(wire)
        client_end.shutdown(socket.SHUT_WR)
        received = []
        with contextlib.suppress(ConnectionClosed):
            received.extend(messages(ws, threading.Lock()))
        server_end.shutdown(socket.SHUT_WR)
        sent = b"".join(iter(lambda: client_end.recv(65536), b""))
    return received, sent


def _accept(
    server_end: socket.socket, client_end: socket.socket, *, splitter: bool = True, limit: int = 4096
):
    """A simple-websocket `Server` on `server_end`, its handshake read by `client_end`."""
    environ = {
        "werkzeug.socket": server_end,
        "HTTP_HOST": "localhost",
        "HTTP_CONNECTION": "Upgrade",
        "HTTP_UPGRADE": "websocket",
        "HTTP_SEC_WEBSOCKET_KEY": "dGhlIHNhbXBsZSBub25jZQ==",
        "HTTP_SEC_WEBSOCKET_VERSION": "13",
    }
    if not splitter:
        environ["HTTP_SEC_WEBSOCKET_EXTENSIONS"] = "x-unknown"
    ws = Server(environ, thread_class=NoReaderThread, max_message_size=limit)
    assert client_end.recv(4096).startswith(b"HTTP/1.1 101")
    return ws


HEARTBEAT = masked_text('[2,"1","Heartbeat",{}]')
WIRES = {
    "plain frames": HEARTBEAT + client_frame(0x82, b"\x01\x02") + masked_text("é" * 100),
    "ping and pong between": HEARTBEAT + client_frame(0x89, b"hello") + client_frame(0x8A, b"") + HEARTBEAT,
    "fragments with a ping inside": client_frame(0x01, b"[2,")
    + client_frame(0x89, b"")
    + client_frame(0x80, b'"2"]')
    + HEARTBEAT,
    "close, then a message in the same read": client_frame(0x88, (1000).to_bytes(2, "big")) + HEARTBEAT,
    "invalid UTF-8": HEARTBEAT + client_frame(0x81, b"\xc3\x28") + HEARTBEAT,
    "unmasked": HEARTBEAT + client_frame(0x81, b"no mask", masked=False) + HEARTBEAT,
    "reserved bit": client_frame(0xC1, b"x") + HEARTBEAT,
    "16-bit length for 2 bytes": client_frame(0x81, b"hi", length_bytes=2) + HEARTBEAT,
    "64-bit length for 200 bytes": client_frame(0x81, b"h" * 200, length_bytes=8) + HEARTBEAT,
    "exactly the limit": masked_text("x" * 4096) + HEARTBEAT,
    "over the limit": HEARTBEAT + masked_text("x" * 4097) + HEARTBEAT,
    "continuation with nothing to continue": client_frame(0x80, b"x") + HEARTBEAT,
    "control frame too long": client_frame(0x89, b"p" * 126) + HEARTBEAT,
}


@pytest.mark.parametrize("wire", WIRES.values(), ids=WIRES.keys())
def test_messages_yields_and_answers_what_wsproto_alone_did(wire):
    with_splitter = _serve(wire, splitter=True)
    assert with_splitter == _serve(wire, splitter=False)
    assert with_splitter[0] or with_splitter[1]  # the case did something to compare


# --- messages(): a charger's messages sent together do not hold up the others -------------------


@pytest.mark.parametrize("splitter", [True, False], ids=["plain frames", "through wsproto"])
def test_messages_sent_together_let_every_other_charger_go_in_between(splitter):
    """Under gevent (as in the web process): 50 messages arrive in one read; the bytes another
    charger sends meanwhile are served after at most a few of them, not after all 50."""
    server_end, client_end = gevent.socket.socketpair()
    other_end, other_client = gevent.socket.socketpair()
    served: list = []

    def other_charger() -> None:
        other_end.recv(1)
        served.append("other")

    with server_end, client_end, other_end, other_client:
        ws = _accept(server_end, client_end, splitter=splitter)
        waiting = gevent.spawn(other_charger)
        gevent.sleep(0)  # it now waits for its bytes
        client_end.sendall(HEARTBEAT * 50)
        for n, _ in enumerate(messages(ws, threading.Lock())):
            served.append(n)
            if n == 0:
                other_client.sendall(b"x")
            if n == 49:
                break
        waiting.join(timeout=5)
    assert "other" in served[:4], served


@pytest.mark.parametrize("splitter", [True, False], ids=["plain frames", "through wsproto"])
def test_messages_past_the_burst_wait_for_their_pacer(splitter):
    """20 messages in one read, 5 allowed at once and then 100 a second: the last is yielded no
    sooner than 15 intervals after the first (a lower bound: the pacer guarantees it)."""
    server_end, client_end = gevent.socket.socketpair()
    with server_end, client_end:
        ws = _accept(server_end, client_end, splitter=splitter)
        client_end.sendall(HEARTBEAT * 20)
        yielded_at = []
        for _ in messages(ws, threading.Lock(), Pacer(rate=100, burst=5)):
            yielded_at.append(time.monotonic())
            if len(yielded_at) == 20:
                break
    assert yielded_at[-1] - yielded_at[0] >= 15 * 0.01 * 0.95
