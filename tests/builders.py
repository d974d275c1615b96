"""Builders for test data: `a_tariff(energy_price=...)` and friends, each committing what it builds."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from csms.cluster import presence
from csms.extensions import db
from csms.models import ChargePoint, Connector, IdTag, Station, Tariff, Transaction, User, Wallet
from csms.services import credentials

_seq = itertools.count(1)


def _save(obj: Any) -> Any:
    db.session.add(obj)
    db.session.commit()
    return obj


def a_user(**overrides: Any) -> User:
    fields = {"email": f"user{next(_seq)}@example.test", "password_hash": "x", "role": "customer"}
    return _save(User(**{**fields, **overrides}))


def a_wallet(user: User | None = None, **overrides: Any) -> Wallet:
    user = user or a_user()
    return _save(Wallet(**{"user_id": user.id, "currency": "EUR", **overrides}))


def an_id_tag(**overrides: Any) -> IdTag:
    return _save(IdTag(**{"id_tag": f"TAG-{next(_seq)}", **overrides}))


def a_station(**overrides: Any) -> Station:
    return _save(Station(**{"name": f"Station {next(_seq)}", **overrides}))


def a_tariff(**overrides: Any) -> Tariff:
    fields = {"name": f"Tariff {next(_seq)}", "currency": "EUR", "energy_price": Decimal("0.3000")}
    return _save(Tariff(**{**fields, **overrides}))


def a_charge_point(*, auth_key: str = "k" * 16, connectors: int = 1, **overrides: Any) -> ChargePoint:
    fields = {"charge_point_id": f"CP-{next(_seq)}", "auth_key_hash": credentials.hash_key(auth_key)}
    point = ChargePoint(**{**fields, **overrides})
    point.connectors = [Connector(connector_id=n) for n in range(connectors + 1)]
    return _save(point)


def a_transaction(point: ChargePoint | None = None, **overrides: Any) -> Transaction:
    point = point or a_charge_point()
    fields = {
        "charge_point_id": point.id,
        "connector_id": 1,
        "id_tag": "TAG",
        "meter_start_wh": 1000,
        "started_at": datetime(2026, 1, 1, 12, 0, tzinfo=UTC),
    }
    return _save(Transaction(**{**fields, **overrides}))


def connections(*charge_point_ids: str, node_id: str = "node-b", since: datetime | None = None) -> None:
    """These chargers held by a live node, as that node's presence writer records them."""
    since = since or datetime.now(UTC)
    opened = [presence.Connected(cp, f"conn-{next(_seq)}", since, "192.0.2.1") for cp in charge_point_ids]
    presence.write(db.session, node_id, 60, opened, [])
