"""A whole CSMS under test, as ops would run it: the web process, and in production mode a
`dramatiq csms.worker actors` worker, on a database of its own."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import Engine

from csms import create_app
from csms.config import normalize_database_url
from csms.extensions import db
from csms.models import IdTag, Tariff, Wallet
from csms.services import chargers, users, wallet
from tests.support.processes import Running, web_process, worker_process

AUTH_KEY = "test-key-0123456789"


@dataclass
class Deployment:
    mode: str
    database_url: str
    env: dict[str, str]
    web: Running
    worker: Running | None
    engine: Engine = field(repr=False)
    nodes: list[Running] = field(default_factory=list)  # every web node; `web` is the first

    @property
    def ws_url(self) -> str:
        return self.web.ws_url

    def rows(self, sql: str, **params: Any) -> list:
        with self.engine.connect() as connection:
            return list(connection.execute(text(sql), params))

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as connection:
            return connection.execute(text(sql), params).scalar()

    def health(self) -> dict[str, Any]:
        """The web process's `/healthz` document (whatever its status code)."""
        try:
            with urllib.request.urlopen(f"{self.web.base_url}/healthz", timeout=10) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            return json.load(error)

    def app(self, **overrides: Any):
        """An app on this deployment's database (and broker), for calling services from the test."""
        config = {"DATABASE_URL": self.database_url, "INSTANCE_PATH": self.env["CSMS_INSTANCE_PATH"]}
        config["RABBITMQ_URL"] = self.env.get("CSMS_RABBITMQ_URL") or None
        return create_app({**config, **overrides})


def seed(
    database_url: str,
    instance: Path,
    charge_points: dict[str, str] | None = None,
    pending: tuple[str, ...] = (),
    id_tags: dict[str, tuple[str, datetime | None]] | None = None,
    customers: dict[str, tuple[str, int]] | None = None,
    tariff: dict[str, Any] | None = None,
    operators: dict[str, str] | None = None,
    security_profiles: dict[str, int] | None = None,
) -> None:
    """Register chargers (`{id: key}`, each with its `security_profiles` entry, else profile 1), id
    tags (`{tag: (status, expiry)}`), customers (`{email: (idTag, funds in cents)}`), operators
    (`{email: password}`) and a default tariff directly in the database."""
    app = create_app({"DATABASE_URL": database_url, "INSTANCE_PATH": str(instance), "RABBITMQ_URL": None})
    with app.app_context():
        for charge_point_id, key in (charge_points or {}).items():
            status = "Pending" if charge_point_id in pending else "Accepted"
            profile = (security_profiles or {}).get(charge_point_id, 1)
            chargers.register(charge_point_id, key, connectors=2, status=status, security_profile=profile)
        for tag, (status, expiry) in (id_tags or {}).items():
            db.session.add(IdTag(id_tag=tag, status=status, expiry_date=expiry))
        db.session.commit()
        for email, (id_tag, funds) in (customers or {}).items():
            user = users.create_user(email, "password-123", id_tag=id_tag)
            wallet_id = db.session.scalar(select(Wallet.id).where(Wallet.user_id == user.id))
            if funds:
                wallet.top_up(wallet_id, funds, reference=f"seed-{email}")
        for email, password in (operators or {}).items():
            users.create_user(email, password, role="operator")
        if tariff is not None:
            db.session.add(Tariff(**{"name": "Default", "currency": "EUR", "is_default": True, **tariff}))
            db.session.commit()
        db.session.remove()
        db.engine.dispose()


@contextmanager
def deployment(
    mode: str,
    workdir: Path,
    *,
    database_url: str | None = None,
    sqlite_template: Path | None = None,
    rabbitmq_url: str | None = None,
    web_rabbitmq_url: str | None = None,
    env: dict[str, str] | None = None,
    with_worker: bool = True,
    web_nodes: int = 1,
    **seed_args: Any,
) -> Iterator[Deployment]:
    """Start a CSMS in `mode` ("embedded" or "production"). `web_rabbitmq_url` lets the web process
    reach RabbitMQ through a different address (a fault-injecting proxy) than the worker. With
    `web_nodes` > 1 (production), that many web processes form a cluster, node ids `<mode>-test-1`,
    `-2`…, each on its own port: `nodes[i]`."""
    workdir.mkdir(parents=True, exist_ok=True)
    if mode == "embedded":
        assert sqlite_template is not None
        database = workdir / "csms.sqlite3"
        shutil.copyfile(sqlite_template, database)
        database_url = f"sqlite:///{database}"
    assert database_url is not None
    seed(database_url, workdir, **seed_args)
    base_env = {
        "CSMS_DATABASE_URL": database_url,
        "CSMS_INSTANCE_PATH": str(workdir),
        "CSMS_NODE_ID": f"{mode}-test",
        **(env or {}),
    }
    with ExitStack() as stack:
        worker = None
        if mode == "production":
            assert rabbitmq_url is not None
            worker_env = {**base_env, "CSMS_RABBITMQ_URL": rabbitmq_url}
            if with_worker:
                worker = stack.enter_context(worker_process(worker_env, workdir))
            base_env["CSMS_RABBITMQ_URL"] = web_rabbitmq_url or rabbitmq_url
        if web_nodes == 1:
            nodes = [stack.enter_context(web_process(base_env, workdir))]
        else:
            nodes = [
                stack.enter_context(web_process({**base_env, "CSMS_NODE_ID": f"{mode}-test-{i}"}, workdir))
                for i in range(1, web_nodes + 1)
            ]
        engine = create_engine(normalize_database_url(database_url))
        stack.callback(engine.dispose)
        yield Deployment(mode, database_url, base_env, nodes[0], worker, engine, nodes)
