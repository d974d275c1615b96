"""Reading a charger's WebSocket in the greenlet that serves it, and one keepalive for all of them.

simple-websocket (under flask-sock) starts a reader thread per connection — a greenlet under gevent —
that parses frames with wsproto and hands each message to the serving greenlet through an Event; with
a ping interval set, that reader also waits in a selector of its own before every read. Per message
that is a second greenlet switch, an Event set and wait, and a selector registration (their cost
is in bench/README.md). Here the serving greenlet reads and parses itself
(the same wsproto connection, the same event handling as simple-websocket's reader, which checks
the size limit and answers pings and closes), and one keepalive sweeps every connection once a
second to ping those whose interval has passed, closing any that did not answer the previous ping.
A charger sending faster than it is served now waits in TCP flow control instead of growing a
queue in the web process.

The frames chargers send are nearly all alike: one whole text message in one masked frame. wsproto
decodes each through a chain of generators, a masker and an incremental UTF-8 decoder, and encodes
each reply the same way, a large share of the web process's time under load (bench/README.md).
`FrameSplitter` decodes those plain frames itself and hands every other frame to wsproto whole, so
wsproto still applies the protocol's rules (pings, pongs, the close handshake, fragments, reserved
bits, the size limit, invalid UTF-8); replies go out as plain text frames. A connection that
negotiated an extension (permessage-deflate) is left to wsproto entirely.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import gevent
from simple_websocket import ConnectionClosed
from wsproto.events import Ping, TextMessage
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import LocalProtocolError

from csms.ocpp.pacing import Pacer

log = logging.getLogger(__name__)


class NoReaderThread:
    """Given to simple-websocket as its `thread_class`: the connection gets no reader of its own
    (see `messages`)."""

    def __init__(self, target: Callable[[], None]):
        self.name = "ocpp-connection"

    def start(self) -> None:
        pass


def messages(ws: Any, send_lock: threading.Lock, pacer: Pacer | None = None) -> Iterator[str | bytes]:
    """Yield each complete message received on `ws` (a simple-websocket `Server` made with
    `NoReaderThread`), each when `pacer` allows (`csms.ocpp.pacing`); raises `ConnectionClosed`
    once the connection is over.

    One read can carry hundreds of messages from a charger that sends without waiting for its
    answers; handled back to back they would hold the hub from every other charger for as long.
    The first message of a read had its turn (the read waited on the hub); before each further
    one the greenlet lets the hub go round once, so every other charger ready to be served is
    served in between. A charger that waits for its answers sends one message a read and never
    pays for this."""
    buffered = ws.input_buffer
    wait_readable = _read_waiter(ws.sock)
    sleep = _sleeper(ws.sock)
    delay = pacer.delay if pacer is not None else _no_delay
    splitter = FrameSplitter(ws.max_message_size, enabled=plain_frames(ws))
    turn_taken = True

    def take_turn() -> None:
        """Wait for the pacer, or let the hub go round when this read's turn is used up."""
        nonlocal turn_taken
        pause = delay()
        if pause or not turn_taken:
            sleep(pause or _NEXT_TURN)
        turn_taken = False

    while ws.connected:
        try:
            wait_readable()
            data = ws.sock.recv(ws.receive_bytes)
        except OSError:
            data = b""
        if not data:
            ws.connected = False
            break
        turn_taken = True
        for message, wire in splitter.feed(data):
            if wire is None:
                take_turn()
            if not ws.connected:
                break
            if wire is None:
                yield message
                continue
            ws.ws.receive_data(wire)
            with send_lock:  # the handling may answer a ping or a close
                try:
                    ws.connected = ws._handle_events()
                except (OSError, LocalProtocolError):
                    ws.connected = False
            while buffered:
                take_turn()
                yield buffered.pop(0)
    raise ConnectionClosed(ws.close_reason, ws.close_message)


def _no_delay() -> float:
    return 0.0


# Seconds: any timer at all. A greenlet sleeping on a timer resumes on the hub's next round, which
# polls the sockets and serves every charger whose bytes are waiting; `gevent.sleep(0)` would only
# run the greenlets already scheduled, not those waiting on their sockets.
_NEXT_TURN = 1e-6


def _sleeper(sock: socket.socket) -> Callable[[float], None]:
    """gevent's `sleep` for a gevent socket (it yields the hub), `time.sleep` otherwise."""
    return gevent.sleep if hasattr(sock, "_wait") else time.sleep


def plain_frames(ws: Any) -> bool:
    """Whether `ws` carries frames as they are: no extension was offered, so none was negotiated."""
    return not ws.environ.get("HTTP_SEC_WEBSOCKET_EXTENSIONS")


def send_text(ws: Any, text: str, plain: bool, timeout: float | None = None) -> None:
    """Send one text message on `ws`, whole (see `write`).

    Raises `ConnectionClosed` once the connection is over, as simple-websocket's `send` does, and
    `TimeoutError` when the charger has not taken the message within `timeout` seconds."""
    if not ws.connected:
        raise ConnectionClosed(ws.close_reason, ws.close_message)
    write(ws.sock, text_frame(text) if plain else ws.ws.send(TextMessage(data=text)), timeout)


def write(sock: socket.socket, data: bytes, timeout: float | None) -> None:
    """Write all of `data`, waiting at most `timeout` seconds for a charger that reads nothing.

    A charger that stops reading fills its socket's buffer; a write to it would then wait for ever
    while holding the connection's send lock, and the keepalive, or a REST command, behind it. One
    write is tried without waiting; what it leaves follows through `sendall` under a gevent timer
    (gevent's `sendall` also asks the socket's buffer size first, a system call per reply, so it is
    not the first try). No `timeout`: no timer. Not under gevent, a blocking `sendall`."""
    if not hasattr(sock, "_wait"):
        sock.sendall(data)
        return
    try:
        sent = sock.send(data, 0, 0.0)  # gevent's socket: a timeout of 0 never waits
    except BlockingIOError:
        sent = 0
    if sent < len(data):
        with gevent.Timeout(timeout, TimeoutError("the peer took nothing in time")):
            sock.sendall(memoryview(data)[sent:])


def text_frame(text: str) -> bytes:
    """`text` as one unmasked text frame (RFC 6455 §5.2), as a server sends it."""
    data = text.encode()
    size = len(data)
    if size < 126:
        return bytes((0x81, size)) + data
    if size < 1 << 16:
        return b"\x81\x7e" + size.to_bytes(2, "big") + data
    return b"\x81\x7f" + size.to_bytes(8, "big") + data


# First byte of a frame: FIN set, no reserved bit, and a text (1) or binary (2) opcode.
_WHOLE_TEXT, _WHOLE_BINARY = 0x81, 0x82
_WHOLE_DATA = frozenset({_WHOLE_TEXT, _WHOLE_BINARY})
_CONTROL = frozenset({0x88, 0x89, 0x8A})  # whole close, ping and pong frames
_MAX_CONTROL_PAYLOAD = 125  # RFC 6455 §5.5


class FrameSplitter:
    """Cuts a client's bytes into frames: yields `(message, None)` for a whole text or binary message
    in one masked frame within the size limit, decoded, and `(None, frame)` for a whole close, ping or
    pong frame, for wsproto. From the first frame it leaves to wsproto's judgement (a fragment, a
    reserved bit, no mask, a length not in its shortest form, an unknown opcode, a message over the
    limit, text that is not UTF-8) it yields `(None, bytes)` of everything that follows, as received:
    wsproto's answer to such a frame is usually a close. Bytes of a frame not yet whole are kept
    until it is."""

    def __init__(self, max_message_size: int | None, enabled: bool = True):
        self.max_size = max_message_size or (1 << 63)
        self.bypass = not enabled
        self.pending: bytes | bytearray = b""

    def feed(self, data: bytes) -> Iterator[tuple[str | bytes | None, bytes | None]]:
        if self.bypass:
            yield None, data
            return
        if self.pending:
            self.pending += data  # a bytearray: a message arriving in many reads is not copied each time
            buffer = self.pending
        else:
            buffer = data
        position = 0
        while (header := _read_header(buffer, position)) is not None:
            first, well_formed, start, size = header
            control = first in _CONTROL and size <= _MAX_CONTROL_PAYLOAD
            if not (well_formed and (control or (first in _WHOLE_DATA and size <= self.max_size))):
                yield self._give_up(buffer[position:])
                return
            stop = start + size
            if len(buffer) < stop:
                break
            if control:
                yield None, buffer[position:stop]
            else:
                message = _unmask(buffer[start - 4 : start], buffer[start:stop])
                if first == _WHOLE_TEXT:
                    try:
                        message = message.decode()
                    except UnicodeDecodeError:
                        yield self._give_up(buffer[position:])
                        return
                yield message, None
            position = stop
        if position == len(buffer):
            self.pending = b""
        elif position or buffer is data:
            self.pending = bytearray(buffer[position:])

    def _give_up(self, rest: bytes) -> tuple[None, bytes]:
        self.bypass = True
        self.pending = b""
        return None, rest


def _read_header(buffer: bytes, position: int) -> tuple[int, bool, int, int] | None:
    """(first byte, whether the header is one wsproto would accept, payload start, payload size) of
    the frame at `position`, or None while its header is not whole. RFC 6455 §5.2: a client's frame
    is masked, and its length takes the shortest of the three forms, with the top bit of the 64-bit
    form clear."""
    if len(buffer) - position < 2:
        return None
    first, second = buffer[position], buffer[position + 1]
    masked = bool(second & 0x80)
    size = second & 0x7F
    start = position + (6 if masked else 2)
    shortest = True
    if size == 126:
        start += 2
        size = int.from_bytes(buffer[position + 2 : position + 4], "big")
        shortest = size > 125
    elif size == 127:
        start += 8
        size = int.from_bytes(buffer[position + 2 : position + 10], "big")
        shortest = 0xFFFF < size < 1 << 63
    if len(buffer) < start:
        return None
    return first, masked and shortest, start, size


def _unmask(mask: bytes | bytearray, payload: bytes | bytearray) -> bytes:
    """RFC 6455 §5.3, as one integer operation: twenty times faster than a loop over the bytes."""
    size = len(payload)
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(size, "little")


def _read_waiter(sock: socket.socket) -> Callable[[], None]:
    """Wait until `sock` is readable, on the read watcher gevent's socket keeps, before reading.

    A charger's next message is rarely there the moment its previous one is answered; gevent's
    `recv` first tries the system call, gets EAGAIN as an exception, then waits on that watcher and
    calls again: waiting first saves the failed call. Not under gevent: the blocking `recv` waits by itself.
    """
    wait = getattr(sock, "_wait", None)
    watcher = getattr(sock, "_read_event", None)
    if wait is None or watcher is None:
        return lambda: None
    return functools.partial(wait, watcher)


def cut_off(ws: Any) -> None:
    """End a connection that takes nothing: no close frame could get through, so none is tried."""
    ws.connected = False
    end_transport(ws.sock)


def end_transport(sock: socket.socket | None) -> None:
    """Shut a TCP connection down for both directions: a read blocked on it returns at once."""
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


# A ping or a close frame is two to a hundred bytes: a connection that cannot take one within this
# long has stopped reading, and one sweep must not wait on it longer than this for the others.
PING_WRITE_SECONDS = 1.0


# Pings (or closes) a sweep writes before it lets the hub go round once. Each costs tens of
# microseconds (wsproto makes the frame; on loopback the write also runs the charger's side), and a
# sweep over 15,000 chargers pinged every 30 s has 500 to write: back to back they held every other
# charger for 20-50 ms once a second, most of the Heartbeat p99 (bench/README.md, issue #15).
WRITES_PER_TURN = 50


class Keepalive:
    """Pings each connection every `interval` seconds from its own start, so the pings of a
    thousand chargers that connected together are not sent in one burst after each other's; a
    connection that has not answered its previous ping by then is closed (1008) and shut down. A
    connection whose reply is being written is left to the next tick: the sweep never waits on a
    send lock, and lets the chargers' messages in between every `WRITES_PER_TURN` writes."""

    def __init__(self, interval: float, connections: Callable[[], Iterable[Any]]):
        self.interval = interval
        self.connections = connections
        self._stopped = threading.Event()

    def start(self) -> None:
        if self.interval:
            self._stopped.clear()
            threading.Thread(target=self._run, name="ocpp-keepalive", daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()

    def _run(self) -> None:
        tick = min(1.0, self.interval)
        while not self._stopped.wait(tick):
            try:
                self.sweep(time.monotonic())
            except Exception:
                log.exception("keepalive sweep failed")

    def sweep(self, now: float) -> None:
        written = 0
        for session in list(self.connections()):
            ws = session.ws
            if written == WRITES_PER_TURN:
                written = 0
                _sleeper(ws.sock)(_NEXT_TURN)
            if session.next_ping > now or not ws.connected:
                continue
            if not session.send_lock.acquire(blocking=False):
                continue  # a reply is being written to it (for at most the write timeout): next tick
            written += 1  # a ping, or a close below
            try:
                session.next_ping = now + self.interval
                answered = ws.pong_received
                if answered:
                    ws.pong_received = False
                    with contextlib.suppress(OSError, ConnectionClosed, LocalProtocolError):
                        write(ws.sock, ws.ws.send(Ping()), PING_WRITE_SECONDS)
            except TimeoutError:
                log.info("%s: takes nothing, not even a ping; closing", session.charge_point_id)
                cut_off(ws)
                continue
            finally:
                session.send_lock.release()
            if not answered:
                log.info("%s: no answer to the last ping; closing", session.charge_point_id)
                session.close(CloseReason.POLICY_VIOLATION, "Ping/Pong timeout")
