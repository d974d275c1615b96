"""A deployment of the replaced Node system (RABBITMQ_URL, DATABASE_URL, PORT, WEBSOCKET_PORT) must not
start as it is: the CSMS reads only CSMS_ variables, so it would run in embedded mode on SQLite and
serve nobody. Each entry point refuses, naming the variable to set."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from csms import config
from tests.support.processes import ROOT

RABBITMQ = "amqp://guest:guest@127.0.0.1:5672/legacy"


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"RABBITMQ_URL": RABBITMQ}, ["CSMS_RABBITMQ_URL"]),
        ({"DATABASE_URL": "postgres://u@h/db"}, ["CSMS_DATABASE_URL"]),
        ({"PORT": "3000"}, ["CSMS_PORT"]),
        ({"WEBSOCKET_PORT": "9220"}, ["CSMS_PORT"]),
        ({"RABBITMQ_URL": RABBITMQ, "PORT": "3000", "CSMS_PORT": "8080"}, ["CSMS_RABBITMQ_URL"]),
    ],
)
def test_an_old_variable_without_its_counterpart_is_refused_by_name(environ, named):
    with pytest.raises(config.LegacySettings) as refused:
        config.refuse_legacy_settings(environ)
    mentioned = {new for new in config.LEGACY_SETTINGS.values() if f"set {new}" in str(refused.value)}
    assert mentioned == set(named)


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"RABBITMQ_URL": RABBITMQ, "CSMS_RABBITMQ_URL": RABBITMQ},
        {"RABBITMQ_URL": RABBITMQ, "CSMS_RABBITMQ_URL": ""},  # embedded mode, asked for explicitly
        {"DATABASE_URL": "postgres://u@h/db", "CSMS_DATABASE_URL": "postgres://u@h/db"},
        {"PORT": "3000", "WEBSOCKET_PORT": "9220", "CSMS_PORT": "3000"},
        {"PORT": ""},
    ],
)
def test_converted_or_absent_settings_start(environ):
    config.refuse_legacy_settings(environ)


def test_an_app_built_by_a_test_or_embedder_is_not_its_process_environment(monkeypatch, tmp_path):
    from csms import create_app

    monkeypatch.setenv("PORT", "3000")
    app = create_app({"INSTANCE_PATH": str(tmp_path), "INPROCESS_WORKER": False})
    assert app.config["PORT"] == 8080
    with pytest.raises(config.LegacySettings, match="set CSMS_PORT"):
        create_app()


ENTRY_POINTS = {
    "web": [sys.executable, "wsgi.py"],
    "worker": [sys.executable, "-m", "dramatiq", "csms.worker", "actors", "--processes", "1"],
    "flask CLI": [sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
}


@pytest.mark.slow
def test_every_entry_point_refuses_to_start_with_only_rabbitmq_url(tmp_path):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CSMS_")}
    environ.update(RABBITMQ_URL=RABBITMQ, CSMS_INSTANCE_PATH=str(tmp_path))
    started = {
        name: subprocess.Popen(
            command, cwd=ROOT, env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for name, command in ENTRY_POINTS.items()
    }
    for name, process in started.items():
        output, _ = process.communicate(timeout=60)
        assert process.returncode != 0, name
        assert "RABBITMQ_URL is set but CSMS_RABBITMQ_URL is not: set CSMS_RABBITMQ_URL" in output, name
    assert not list(tmp_path.glob("*.db"))  # no embedded database was created
