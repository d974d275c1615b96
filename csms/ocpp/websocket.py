"""Reading a charger's WebSocket in the greenlet that serves it, and one keepalive for all of them.

simple-websocket (under flask-sock) starts a reader thread per connection — a greenlet under gevent —
that parses frames with wsproto and hands each message to the serving greenlet through an Event; with
a ping interval set, that reader also waits in a selector of its own before every read. Per message
that is a second greenlet switch, an Event set and wait, and a selector registration: a fifth of
the web process's CPU per round trip, measured. Here the serving greenlet reads and parses itself
(the same wsproto connection, the same event handling as simple-websocket's reader, which checks
the size limit and answers pings and closes), and one keepalive sweeps every connection once a
second to ping those whose interval has passed, closing any that did not answer the previous ping.
A charger sending faster than it is served now waits in TCP flow control instead of growing a
queue in the web process.
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

from simple_websocket import ConnectionClosed
from wsproto.events import Ping
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import LocalProtocolError

log = logging.getLogger(__name__)


class NoReaderThread:
    """Given to simple-websocket as its `thread_class`: the connection gets no reader of its own
    (see `messages`)."""

    def __init__(self, target: Callable[[], None]):
        self.name = "ocpp-connection"

    def start(self) -> None:
        pass


def messages(ws: Any, send_lock: threading.Lock) -> Iterator[str | bytes]:
    """Yield each complete message received on `ws` (a simple-websocket `Server` made with
    `NoReaderThread`); raises `ConnectionClosed` once the connection is over."""
    buffered = ws.input_buffer
    wait_readable = _read_waiter(ws.sock)
    while ws.connected:
        try:
            wait_readable()
            data = ws.sock.recv(ws.receive_bytes)
        except OSError:
            data = b""
        if not data:
            ws.connected = False
            break
        ws.ws.receive_data(data)
        with send_lock:  # the handling may answer a ping or a close
            try:
                ws.connected = ws._handle_events()
            except (OSError, LocalProtocolError):
                ws.connected = False
        while buffered:
            yield buffered.pop(0)
    raise ConnectionClosed(ws.close_reason, ws.close_message)


def _read_waiter(sock: socket.socket) -> Callable[[], None]:
    """Wait until `sock` is readable, on the read watcher gevent's socket keeps, before reading.

    A charger's next message is rarely there the moment its previous one is answered; gevent's
    `recv` first tries the system call, gets EAGAIN as an exception, then waits on that watcher and
    calls again: waiting first saves the failed call (a tenth of the bare stack's CPU per round
    trip, measured). Not under gevent: the blocking `recv` waits by itself.
    """
    wait = getattr(sock, "_wait", None)
    watcher = getattr(sock, "_read_event", None)
    if wait is None or watcher is None:
        return lambda: None
    return functools.partial(wait, watcher)


def end_transport(sock: socket.socket | None) -> None:
    """Shut a TCP connection down for both directions: a read blocked on it returns at once."""
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class Keepalive:
    """Pings each connection every `interval` seconds from its own start, so the pings of a
    thousand chargers that connected together are not sent in one burst after each other's; a
    connection that has not answered its previous ping by then is closed (1008) and shut down."""

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
        for session in list(self.connections()):
            if session.next_ping > now:
                continue
            session.next_ping = now + self.interval
            ws = session.ws
            if not ws.connected:
                continue
            if not ws.pong_received:
                log.info("%s: no answer to the last ping; closing", session.charge_point_id)
                session.close(CloseReason.POLICY_VIOLATION, "Ping/Pong timeout")
                continue
            ws.pong_received = False
            with contextlib.suppress(OSError, ConnectionClosed), session.send_lock:
                ws.sock.send(ws.ws.send(Ping()))
