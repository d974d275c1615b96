"""`python wsgi.py` really serves: the gevent web process starts, migrates nothing by itself, and
answers /healthz in embedded mode (with its in-process worker) and in production mode."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get_json(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@contextmanager
def web_process(env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "wsgi.py"],
        cwd=ROOT,
        env={**os.environ, **env, "CSMS_PORT": str(port)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"web process exited: {process.stdout.read()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("web process did not listen within 30 s")
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def test_embedded_mode_serves_health(sqlite_template, tmp_path):
    database = tmp_path / "csms.sqlite3"
    database.write_bytes(sqlite_template.read_bytes())
    env = {"CSMS_DATABASE_URL": f"sqlite:///{database}", "CSMS_INSTANCE_PATH": str(tmp_path)}
    with web_process({**env, "CSMS_RABBITMQ_URL": ""}) as base:
        status, body = get_json(f"{base}/healthz")
    assert status == 200, body
    assert (body["db"], body["broker"], body["mode"]) == ("ok", "ok", "embedded")


@pytest.mark.postgres
@pytest.mark.rabbitmq
def test_production_mode_serves_health(postgres_url, rabbitmq_url, tmp_path):
    env = {
        "CSMS_DATABASE_URL": postgres_url,
        "CSMS_RABBITMQ_URL": rabbitmq_url,
        "CSMS_INSTANCE_PATH": str(tmp_path),
        "CSMS_NODE_ID": "node-test-1",
    }
    with web_process(env) as base:
        status, body = get_json(f"{base}/healthz")
    assert status == 200, body
    assert (body["db"], body["broker"], body["mode"], body["node"]) == (
        "ok",
        "ok",
        "production",
        "node-test-1",
    )
