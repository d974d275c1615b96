"""Two real web nodes (and a worker) on one database and broker, for the cluster's tests: chargers
on one node, REST on the other."""

from __future__ import annotations

from pathlib import Path

from tests.support.deployment import AUTH_KEY, deployment
from tests.support.http import Http

OPERATOR = "operator@example.test"


def two_nodes(workdir: Path, postgres_databases, rabbitmq_url: str, env: dict[str, str], chargers: list[str]):
    """A production deployment with web nodes `production-test-1` and `-2`, `chargers` registered
    (key `AUTH_KEY`) and the operator `OPERATOR` (password `password-123`)."""
    return deployment(
        "production",
        workdir,
        database_url=postgres_databases(),
        rabbitmq_url=rabbitmq_url,
        web_nodes=2,
        env=env,
        charge_points=dict.fromkeys(chargers, AUTH_KEY),
        operators={OPERATOR: "password-123"},
    )


def operator_on(node) -> Http:
    return Http(node.base_url).login(OPERATOR)
