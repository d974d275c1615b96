"""`csms-web --processes N`: N web processes serving one host:port, each a node of the cluster.

One gevent process uses one core; a host with more cores runs more processes. How they share the
port, and why:

- **Each process binds its own listener with SO_REUSEPORT** and the kernel spreads incoming
  connections across them by a hash of the connection's addresses. The other way, one listener
  shared by every process, lets them race for each accept: with epoll the same process tends to win
  while it is idle, and it keeps the chargers it won for hours, since an OCPP WebSocket is
  long-lived; a kernel-side hash spreads connections evenly whatever each process is doing.
- **Fresh interpreters, never `fork()`.** The parent starts each child as a new `python wsgi.py`,
  which monkey-patches gevent and builds its app itself, exactly as a lone process does (TLS
  settings included). Forking after monkey-patching and `create_app()` would hand every child the
  parent's hub, sockets, database pool and locks in whatever state they were in.
- **The parent supervises only.** It never serves; it restarts a child that dies (after a backoff,
  logged), forwards SIGTERM/SIGINT to the children and returns once they have stopped, and gives up
  with a non-zero exit status when a child keeps failing to start (a bad setting, a port taken), so
  a process manager sees the failure instead of a parent restarting children for ever.
- **Each child in a session of its own**, as separately started servers are: Linux's autogroup
  scheduling (on by default on many distributions) shares the CPU between sessions first, so N
  children in the parent's session would get one process's share on a busy host. Out of the
  parent's process group, a child does not see a terminal's Ctrl-C twice (the parent forwards it),
  and it watches its parent (`stop_when_orphaned`): a child whose supervisor was killed stops too.
- **A child that dies loses only its own connections.** The connections waiting in its accept queue
  are reset and their chargers reconnect, the kernel sends new connections to the other children
  until the replacement binds the port again; the other children's chargers notice nothing.

Each child is a node with an id of its own (`node_id`), because the cluster records which node
holds a charger's connection and routes commands to that node.

Embedded mode (SQLite and the in-process worker) stays one process: it has no broker for nodes to
talk through.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

from prometheus_client import multiprocess

log = logging.getLogger(__name__)

STARTUP_GRACE = 10.0  # a child that exits sooner than this after its start failed to start
MAX_FAILED_STARTS = 5  # consecutive failed starts of one child before the parent gives up
FIRST_BACKOFF = 1.0  # seconds before a child is started again, doubled after each failed start
MAX_BACKOFF = 30.0
STOP_TIMEOUT = 20.0  # seconds the children get to stop before they are killed


def node_id(base: str, index: int, processes: int) -> str:
    """The node id of web process `index` (1-based) of `processes` on a host whose `CSMS_NODE_ID` is
    `base`: `base` itself for a lone process, `base-<index>` otherwise (web-1 → web-1-1, web-1-2),
    so the ids stay readable and unique as long as each host has an id of its own."""
    if not 1 <= index <= processes:
        raise ValueError(f"process {index} of {processes}")
    return base if processes == 1 else f"{base}-{index}"


def listener(host: str, port: int, backlog: int, reuse_port: bool) -> socket.socket:
    """The listening socket of one web process; with `reuse_port`, one of several on the same port
    (SO_REUSEPORT: the kernel spreads connections among them)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


def ensure_port_free(host: str, port: int) -> None:
    """Fail unless `host:port` is free. The children bind with SO_REUSEPORT, which would let them
    join the listeners of another `csms-web` still running on the port (same user) without an
    error: a bind without SO_REUSEPORT is refused while any listener holds the port."""
    try:
        listener(host, port, backlog=1, reuse_port=False).close()
    except OSError as exc:
        raise SystemExit(f"csms-web: cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def stop_when_orphaned(parent_pid: int, interval: float = 1.0) -> threading.Thread:
    """In a child: SIGTERM this process once `parent_pid` is no longer its parent (the supervisor
    died, even by SIGKILL), so that no web process serves unsupervised and holds the port."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval)
        log.error("the supervisor (pid %d) is gone; stopping", parent_pid)
        os.kill(os.getpid(), signal.SIGTERM)

    watcher = threading.Thread(target=watch, name="orphan-watch", daemon=True)
    watcher.start()
    return watcher


@dataclass
class Child:
    """One web process slot: its command and environment, and the process now running in it."""

    index: int
    node: str
    command: list[str]
    env: dict[str, str]
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    failed_starts: int = 0
    restart_at: float | None = None


@dataclass
class Supervisor:
    """Runs `children`, restarts those that die, stops them all on SIGTERM/SIGINT."""

    children: list[Child]
    metrics_dir: str | None = None  # the children's shared PROMETHEUS_MULTIPROC_DIR (csms.metrics)
    startup_grace: float = STARTUP_GRACE
    max_failed_starts: int = MAX_FAILED_STARTS
    first_backoff: float = FIRST_BACKOFF
    max_backoff: float = MAX_BACKOFF
    stop_timeout: float = STOP_TIMEOUT
    _signal: int | None = field(default=None, init=False)

    def run(self) -> int:
        """Supervise until a signal (0) or a child that keeps failing to start (1)."""
        previous = {
            signum: signal.signal(signum, self._on_signal) for signum in (signal.SIGTERM, signal.SIGINT)
        }
        status = 1
        try:
            for child in self.children:
                self._start(child)
            while self._signal is None:
                failing = self._watch()
                if failing is not None:
                    log.error(
                        "web process %d (node %s) failed to start %d times in a row; stopping",
                        failing.index,
                        failing.node,
                        failing.failed_starts,
                    )
                    break
                time.sleep(0.1)
            else:
                status = 0
        finally:
            self._stop_all(self._signal or signal.SIGTERM)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return status

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """End `run()`: the children get `signum`."""
        self._signal = signum

    def _on_signal(self, signum: int, _frame) -> None:
        log.info("%s: stopping the web processes", signal.Signals(signum).name)
        self.stop(signum)

    def _start(self, child: Child) -> None:
        child.process = subprocess.Popen(child.command, env=child.env, start_new_session=True)
        child.started_at = time.monotonic()
        child.restart_at = None
        log.info("web process %d (node %s) started, pid %d", child.index, child.node, child.process.pid)

    def _watch(self) -> Child | None:
        """Note the children that exited, start those whose backoff is over; returns a child that
        failed to start too often."""
        now = time.monotonic()
        for child in self.children:
            if child.process is not None and (code := child.process.poll()) is not None:
                lived = now - child.started_at
                child.failed_starts = child.failed_starts + 1 if lived < self.startup_grace else 0
                if child.failed_starts >= self.max_failed_starts:
                    return child
                delay = min(self.max_backoff, self.first_backoff * 2 ** max(child.failed_starts - 1, 0))
                log.warning(
                    "web process %d (node %s, pid %d) exited with status %s after %.1f s; restarting in %g s",
                    child.index,
                    child.node,
                    child.process.pid,
                    code,
                    lived,
                    delay,
                )
                if self.metrics_dir:  # its live gauges (chargers connected) no longer count
                    multiprocess.mark_process_dead(child.process.pid, self.metrics_dir)
                child.process = None
                child.restart_at = now + delay
            elif child.process is None and child.restart_at is not None and now >= child.restart_at:
                self._start(child)
        return None

    def _stop_all(self, signum: int) -> None:
        """Pass `signum` on to every child, wait for them, kill those that outlive `stop_timeout`."""
        running = [child.process for child in self.children if child.process is not None]
        for process in running:
            if process.poll() is None:
                process.send_signal(signum)
        deadline = time.monotonic() + self.stop_timeout
        for process in running:
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                log.warning(
                    "web process pid %d did not stop within %g s; killing it", process.pid, self.stop_timeout
                )
                process.kill()
                process.wait()


def supervise(config: dict, processes: int, script: str, embedded: bool) -> int:
    """Run `processes` copies of the web process `script` (`wsgi.py`) on the configured host:port,
    each with its node id, until stopped; returns the exit status for `csms-web`."""
    if embedded:
        raise SystemExit(
            f"csms-web: --processes {processes} needs production mode (CSMS_RABBITMQ_URL and "
            "CSMS_DATABASE_URL): embedded mode's SQLite database and in-process worker serve one "
            "process only"
        )
    ensure_port_free(config["HOST"], config["PORT"])
    # One scrape of /metrics reaches one child (they share the port): each writes its metrics to
    # this directory and whichever answers reports them all (prometheus_client's multiprocess mode).
    metrics_dir = tempfile.mkdtemp(prefix="csms-metrics-")
    children = []
    for index in range(1, processes + 1):
        node = node_id(config["NODE_ID"], index, processes)
        env = {
            **os.environ,
            "CSMS_NODE_ID": node,
            "CSMS_WEB_PROCESSES": "1",
            "PROMETHEUS_MULTIPROC_DIR": metrics_dir,
        }
        command = [
            sys.executable,
            script,
            "--processes",
            "1",
            "--reuse-port",
            "--parent-pid",
            str(os.getpid()),
        ]
        children.append(Child(index, node, command, env))
    log.info(
        "supervising %d web processes on %s:%s (nodes %s)",
        processes,
        config["HOST"],
        config["PORT"],
        ", ".join(child.node for child in children),
    )
    try:
        return Supervisor(children, metrics_dir=metrics_dir).run()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
