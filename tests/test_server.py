"""`python wsgi.py` really serves: the gevent web process starts and answers /healthz in embedded
mode (with its in-process worker; Ctrl-C stops it without a traceback) and in production mode."""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request

import pytest

from tests.support.processes import web_process

pytestmark = pytest.mark.slow


def get_json(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_embedded_mode_serves_health(sqlite_template, tmp_path):
    database = tmp_path / "csms.sqlite3"
    database.write_bytes(sqlite_template.read_bytes())
    env = {"CSMS_DATABASE_URL": f"sqlite:///{database}", "CSMS_INSTANCE_PATH": str(tmp_path)}
    with web_process(env, tmp_path) as web:
        status, body = get_json(f"{web.base_url}/healthz")
        web.process.send_signal(signal.SIGINT)  # Ctrl-C on `make run`
        assert web.process.wait(timeout=30) == 0
    assert status == 200, body
    assert (body["db"], body["broker"], body["mode"]) == ("ok", "ok", "embedded")
    assert "interrupted: stopping" in web.log() and "Traceback" not in web.log()


@pytest.mark.postgres
@pytest.mark.rabbitmq
def test_production_mode_serves_health(postgres_url, rabbitmq_url, tmp_path):
    env = {
        "CSMS_DATABASE_URL": postgres_url,
        "CSMS_RABBITMQ_URL": rabbitmq_url,
        "CSMS_INSTANCE_PATH": str(tmp_path),
        "CSMS_NODE_ID": "node-test-1",
    }
    with web_process(env, tmp_path) as web:
        status, body = get_json(f"{web.base_url}/healthz")
    assert status == 200, body
    assert (body["db"], body["broker"], body["mode"], body["node"]) == (
        "ok",
        "ok",
        "production",
        "node-test-1",
    )
