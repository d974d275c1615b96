"""Real processes for tests: the web process (`python wsgi.py`), `dramatiq csms.worker actors` workers, and a
TCP proxy that can cut the web process off from RabbitMQ and let it back."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def _stop(process: subprocess.Popen) -> None:
    """Stop a process and everything it started (each runs in a process group of its own), so no
    forked worker outlives its test and consumes the next test's messages."""
    if process.poll() is None:
        process.terminate()
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=15)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


class Running:
    def __init__(self, process: subprocess.Popen, port: int | None, log_path: Path):
        self.process = process
        self.port = port
        self.log_path = log_path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill_hard(self) -> None:
        """SIGKILL the process and its children at once, as a crashed machine would."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


@contextmanager
def web_process(env: dict[str, str], log_dir: Path) -> Iterator[Running]:
    """`python wsgi.py` on a free port with `env` (CSMS_* settings); stopped on exit. A port another
    test's process took between `free_port` and the bind is given up for another one."""
    for _attempt in range(3):
        running = _start_web(env, log_dir, free_port())
        if _wait_listening(running):
            break
    else:
        pytest.fail(f"web process found no free port: {running.log()[-4000:]}")
    try:
        yield running
    finally:
        _stop(running.process)


def _start_web(env: dict[str, str], log_dir: Path, port: int) -> Running:
    log_path = log_dir / f"web-{port}.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "wsgi.py"],
            cwd=ROOT,
            start_new_session=True,
            env={**os.environ, "CSMS_RABBITMQ_URL": "", **env, "CSMS_PORT": str(port)},
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    return Running(process, port, log_path)


def _wait_listening(running: Running, timeout: float = 30.0) -> bool:
    """True once the process listens; False when it exited because its port was taken."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if running.process.poll() is not None:
            if "Address already in use" in running.log():
                return False
            pytest.fail(f"web process exited: {running.log()[-4000:]}")
        try:
            socket.create_connection(("127.0.0.1", running.port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"web process did not listen within {timeout:g}s: {running.log()[-4000:]}")


@contextmanager
def worker_process(env: dict[str, str], log_dir: Path, threads: int = 4) -> Iterator[Running]:
    """`dramatiq csms.worker actors` with one process, as ops would run it."""
    log_path = log_dir / f"worker-{time.monotonic_ns()}.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dramatiq",
                "csms.worker",
                "actors",
                "--processes",
                "1",
                "--threads",
                str(threads),
            ],
            cwd=ROOT,
            start_new_session=True,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    running = Running(process, None, log_path)
    try:
        if not wait_until(lambda: "Worker process is ready" in running.log(), timeout=30):
            pytest.fail(f"worker did not start: {running.log()[-4000:]}")
        yield running
    finally:
        _stop(process)


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target; `cut()` drops every connection and refuses new ones,
    `restore()` accepts again. Counts the connections it carries at once."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1"):
        self.target = (target_host, target_port)
        self.port = free_port()
        self.open_connections = 0
        self.peak_connections = 0
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._accepting = False

    def start(self) -> TcpProxy:
        self.restore()
        return self

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self._listener = listener
        self._accepting = True
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        self._accepting = False
        if self._listener is not None:
            # A plain close() does not wake a thread blocked in accept() on Linux (it would go on
            # accepting); shutdown() does.
            with suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            for sock in list(self._sockets):
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._sockets.clear()

    stop = cut

    def _accept(self, listener: socket.socket) -> None:
        while self._accepting:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            if not self._accepting:
                client.close()
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets.update({client, upstream})
                self.open_connections += 1
                self.peak_connections = max(self.peak_connections, self.open_connections)
            done = threading.Event()
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b, done), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, done: threading.Event) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            if not done.is_set():
                done.set()
                with self._lock:
                    self.open_connections -= 1
