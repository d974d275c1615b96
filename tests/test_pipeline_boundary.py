"""The web side and the workers meet only at the pipeline boundary: the web side addresses actors by
queue and name and never imports an actor module; importing an actor module builds no app, creates no
file and connects to nothing; the worker's entry module chooses the broker before `actors` loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import dramatiq
import pytest

from csms.pipeline import addresses
from tests.conftest import ROOT

ACTOR_MODULES = [f"actors.{path.stem}" for path in sorted((ROOT / "actors").glob("[!_]*.py"))]


def run_fresh(code: str, cwd: Path, **env: str) -> dict:
    """Run `code` in a new interpreter; it prints one JSON document, returned here."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


LOADED_ACTORS = "sorted(name for name in sys.modules if name == 'actors' or name.startswith('actors.'))"


def test_importing_the_gateway_loads_no_actor_module(tmp_path):
    loaded = run_fresh(
        f"""
        import json, sys
        import csms.ocpp.gateway, csms.ocpp.route, csms.api, csms.api.cms, csms.realtime
        print(json.dumps({LOADED_ACTORS}))
        """,
        tmp_path,
    )
    assert loaded == []


@pytest.mark.rabbitmq
def test_a_production_web_app_loads_no_actor_module(tmp_path, rabbitmq_url, sqlite_template):
    loaded = run_fresh(
        f"""
        import json, sys
        from csms import create_app
        app = create_app()
        app.extensions["ocpp"]  # the gateway, with its hand-off
        print(json.dumps({LOADED_ACTORS}))
        """,
        tmp_path,
        CSMS_RABBITMQ_URL=rabbitmq_url,
        CSMS_DATABASE_URL=f"sqlite:///{sqlite_template}",
        CSMS_INSTANCE_PATH=str(tmp_path / "instance"),
    )
    assert loaded == []


@pytest.mark.parametrize("module", [*ACTOR_MODULES, "actors"])
def test_importing_an_actor_module_builds_no_app_and_creates_no_file(tmp_path, module):
    instance = tmp_path / "instance"
    outcome = run_fresh(
        f"""
        import json, os, sys
        import flask
        built = []
        original = flask.Flask.__init__
        def counting(self, *args, **kwargs):
            built.append(args[0] if args else kwargs.get("import_name"))
            original(self, *args, **kwargs)
        flask.Flask.__init__ = counting
        import dramatiq
        import {module}
        broker = type(dramatiq.get_broker()).__name__
        print(json.dumps({{"apps": built, "files": sorted(os.listdir(".")), "broker": broker}}))
        """,
        tmp_path,
        CSMS_INSTANCE_PATH=str(instance),
    )
    assert outcome == {"apps": [], "files": [], "broker": "UnchosenBroker"}
    assert not instance.exists()


@pytest.mark.rabbitmq
def test_the_worker_entry_module_sets_the_broker_before_the_actors_load(
    tmp_path, rabbitmq_url, sqlite_template
):
    outcome = run_fresh(
        """
        import json, sys
        import dramatiq
        import csms.worker
        assert not [name for name in sys.modules if name.startswith("actors")]
        import actors
        from actors.storage import record_exchanges
        broker = dramatiq.get_broker()
        print(json.dumps({
            "broker": type(broker).__name__,
            "same": broker is csms.worker.broker and record_exchanges.broker is broker,
            "middleware": [type(m).__name__ for m in broker.middleware if m.__module__.startswith("csms")],
        }))
        """,
        tmp_path,
        CSMS_RABBITMQ_URL=rabbitmq_url,
        CSMS_DATABASE_URL=f"sqlite:///{sqlite_template}",
        CSMS_INSTANCE_PATH=str(tmp_path / "instance"),
        CSMS_SECRET_KEY=os.environ["CSMS_SECRET_KEY"],  # production mode refuses the default
    )
    assert outcome == {
        "broker": "RabbitmqBroker",
        "same": True,
        "middleware": ["AppContextMiddleware", "DeadLetterLog", "EventsSweep", "LastSeenFlusher"],
    }


def test_every_address_names_a_declared_actor_on_its_queue(app):
    import actors  # noqa: F401

    declared = dramatiq.get_broker().actors
    named = [value for value in vars(addresses).values() if isinstance(value, addresses.ActorAddress)]
    assert len(named) == 9
    for address in named:
        actor = declared[address.actor_name]
        assert (actor.queue_name, actor.actor_name) == (address.queue_name, address.actor_name)


def test_an_address_builds_the_message_its_actor_would(app):
    from actors.storage import record_exchanges

    built = addresses.RECORD_EXCHANGES.message([{"x": 1}])
    expected = record_exchanges.message([{"x": 1}])
    assert (built.queue_name, built.actor_name, built.args, built.kwargs, built.options) == (
        expected.queue_name,
        expected.actor_name,
        expected.args,
        expected.kwargs,
        expected.options,
    )


@pytest.mark.parametrize(
    ("action", "command", "address"),
    [
        ("MeterValues", False, addresses.PROCESS_METER_VALUES),
        ("StartTransaction", False, addresses.PROCESS_TRANSACTION_MESSAGES),
        ("StopTransaction", False, addresses.PROCESS_TRANSACTION_MESSAGES),
        ("Heartbeat", False, addresses.RECORD_EXCHANGES),
        (None, False, addresses.RECORD_EXCHANGES),
        ("Reset", True, addresses.RECORD_COMMANDS),
        ("MeterValues", True, addresses.RECORD_COMMANDS),
    ],
)
def test_each_exchange_goes_to_the_actor_of_its_concern(action, command, address):
    assert addresses.for_exchange(action, command=command) is address


@pytest.mark.slow
def test_a_worker_started_without_the_entry_module_refuses_to_run(tmp_path):
    """`dramatiq actors` (the command before `csms.worker`) would consume nothing while the queues
    fill; it stops at once and says which command to run."""
    result = subprocess.run(
        [sys.executable, "-m", "dramatiq", "actors", "--processes", "1", "--threads", "1"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "CSMS_INSTANCE_PATH": str(tmp_path / "i")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "start workers with `dramatiq csms.worker actors`" in result.stderr + result.stdout
