"""Fixtures: apps on SQLite and on real PostgreSQL, a real RabbitMQ, the in-process worker, builders.

PostgreSQL and RabbitMQ are used for real. When one is unreachable its tests skip, unless
CSMS_REQUIRE_SERVICES=1 (CI sets it), where an unreachable service fails them instead.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import pika
import psycopg
import pytest
from flask import Flask
from flask_migrate import upgrade
from sqlalchemy import text

from csms import create_app
from csms.broker import QUEUES, InProcessWorker
from csms.extensions import db

ROOT = Path(__file__).resolve().parent.parent
REQUIRE_SERVICES = os.environ.get("CSMS_REQUIRE_SERVICES") == "1"
POSTGRES_ADMIN_URL = os.environ.get("CSMS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
RABBITMQ_URL = os.environ.get("CSMS_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
# Production-mode processes refuse a guessable CSMS_SECRET_KEY (csms.startup): the processes tests
# start inherit a random one, unless a test gives its own.
os.environ.setdefault("CSMS_SECRET_KEY", secrets.token_hex(32))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Keep each phase's report on the test item (`item.rep_call`), so a fixture's teardown can tell
    whether its test failed (the browser tests save a screenshot then)."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def service_unavailable(service: str, error: object) -> None:
    message = f"{service} unavailable: {error}"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message} (CSMS_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(message)


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


def migrate_database(url: str, tmp_instance: Path) -> None:
    app = create_app({"DATABASE_URL": url, "INSTANCE_PATH": str(tmp_instance)})
    with app.app_context():
        upgrade()
        db.engine.dispose()


@pytest.fixture(scope="session")
def postgres_databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], str]]:
    """Makes fresh, migrated PostgreSQL databases; all are dropped when the run ends."""
    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        service_unavailable("PostgreSQL", exc)
    created: list[str] = []

    def create() -> str:
        name = f"csms_test_{secrets.token_hex(4)}"
        admin.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        url = _with_database(POSTGRES_ADMIN_URL, name)
        migrate_database(url, tmp_path_factory.mktemp("pg-instance"))
        return url

    try:
        yield create
    finally:
        for name in created:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(scope="session")
def postgres_url(postgres_databases: Callable[[], str]) -> str:
    """The run's shared PostgreSQL database; tables are emptied after each test that used it."""
    return postgres_databases()


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    """A reachable RabbitMQ, with the product's queues emptied so earlier runs cannot leak in.

    Under pytest-xdist each worker gets a virtual host of its own (`<vhost>-gw0`, ...): the product's
    queue and exchange names are fixed, so two workers' deployments in one vhost would consume each
    other's messages.
    """
    url = _worker_vhost(RABBITMQ_URL, os.environ.get("PYTEST_XDIST_WORKER"))
    parameters = pika.URLParameters(url)
    parameters.socket_timeout = 3
    parameters.connection_attempts = 1
    try:
        connection = _connect_or_add_vhost(parameters)
    except Exception as exc:  # pika signals "unreachable" through several exception types
        service_unavailable("RabbitMQ", exc)
    channel = connection.channel()
    for queue in QUEUES:
        for name in (queue, f"{queue}.DQ", f"{queue}.XQ"):
            channel.queue_delete(name)
    connection.close()
    return url


def _worker_vhost(url: str, worker: str | None) -> str:
    if not worker:
        return url
    parts = urlsplit(url)
    vhost = unquote(parts.path[1:]) or "/"
    name = f"{'csms-test' if vhost == '/' else vhost}-{worker}"
    return urlunsplit(parts._replace(path="/" + quote(name, safe="")))


def _connect_or_add_vhost(parameters: pika.URLParameters) -> pika.BlockingConnection:
    """Connect; a missing virtual host is added with `rabbitmqctl` (present where the broker runs,
    as in CI), and its absence is reported with what to do."""
    try:
        return pika.BlockingConnection(parameters)
    except (pika.exceptions.ProbableAccessDeniedError, pika.exceptions.ConnectionClosedByBroker) as exc:
        vhost, user = parameters.virtual_host, parameters.credentials.username
        rabbitmqctl = shutil.which("rabbitmqctl")
        if rabbitmqctl is None:
            raise RuntimeError(
                f"virtual host {vhost!r} is missing ({exc}); add it (rabbitmqctl add_vhost {vhost}) "
                "or run the tests without xdist (PYTEST_WORKERS=0)"
            ) from exc
        for command in (["add_vhost", vhost], ["set_permissions", "-p", vhost, user, ".*", ".*", ".*"]):
            subprocess.run([rabbitmqctl, "-q", *command], check=True, capture_output=True, timeout=60)
        return pika.BlockingConnection(parameters)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (migrating once keeps the suite fast)."""
    folder = tmp_path_factory.mktemp("sqlite-template")
    path = folder / "template.sqlite3"
    migrate_database(f"sqlite:///{path}", folder)
    return path


def _truncate_all() -> None:
    tables = ", ".join(f'"{t.name}"' for t in db.metadata.sorted_tables)
    db.session.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    db.session.commit()


@pytest.fixture
def make_app(tmp_path: Path, sqlite_template: Path) -> Iterator[Callable[..., Flask]]:
    """Build apps with config overrides; embedded SQLite (a private copy) unless a DATABASE_URL is given."""
    built: list[Flask] = []

    def build(**overrides: Any) -> Flask:
        config: dict[str, Any] = {"INSTANCE_PATH": str(tmp_path / "instance"), "TESTING": True}
        if "DATABASE_URL" not in overrides:
            database = tmp_path / f"csms-{len(built)}.sqlite3"
            shutil.copyfile(sqlite_template, database)
            config["DATABASE_URL"] = f"sqlite:///{database}"
        config.update(overrides)
        app = create_app(config)
        built.append(app)
        return app

    yield build
    for app in built:
        with app.app_context():
            db.session.remove()
            if "/csms_test_" in (app.config["DATABASE_URL"] or ""):  # the shared per-run database
                _truncate_all()
            db.engine.dispose()


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Iterator[Flask]:
    """The embedded mode: SQLite and the in-process broker."""
    app = make_app()
    with app.app_context():
        yield app


@pytest.fixture(params=["sqlite", "postgres"])
def any_db_app(request: pytest.FixtureRequest, make_app: Callable[..., Flask]) -> Iterator[Flask]:
    """The same test on SQLite and on PostgreSQL."""
    if request.param == "postgres":
        app = make_app(DATABASE_URL=request.getfixturevalue("postgres_url"))
    else:
        app = make_app()
    with app.app_context():
        yield app


@pytest.fixture
def worker(app: Flask) -> Iterator[InProcessWorker]:
    """The embedded in-process Dramatiq worker, running for the test."""
    running = InProcessWorker(app).start()
    yield running
    running.stop()


@pytest.fixture
def cli(app: Flask):
    return app.test_cli_runner()
