"""Exchanges as the gateway hands them to the actors, and a customer waiting to charge: for tests
that run the actors' code directly against SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

from flask import Flask
from sqlalchemy import select

from csms.extensions import db
from csms.models import SessionState, Tariff, Wallet
from csms.services import sessions, transactions, users, wallet
from tests.builders import a_charge_point


def frame(direction: str, message_type: int, action: str, payload: dict, unique_id: str = "u1") -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "direction": direction,
        "message_type": message_type,
        "unique_id": unique_id,
        "action": action,
        "payload": payload,
        "at": datetime.now(UTC).isoformat(),
    }


def exchange(charge_point_id: str, action: str, request: dict, response: dict | None = None) -> dict:
    """A charger's CALL and the CSMS's CALLRESULT."""
    return {
        "charge_point_id": charge_point_id,
        "node_id": "test",
        "frames": [frame("in", 2, action, request), frame("out", 3, action, response or {})],
    }


def a_customer_waiting(app: Flask, charge_point_id: str, id_tag: str, email: str) -> dict:
    """A charger, a default tariff of 0.25/kWh, a customer with 100.00 whose session of 30.00 is
    accepted on connector 1, and the transactionId its StartTransaction (meterStart 1000 Wh at
    2026-09-01 10:00 UTC) was given."""
    point = a_charge_point(charge_point_id=charge_point_id, connectors=2)
    db.session.add(
        Tariff(
            name="T", currency="EUR", energy_price=Decimal("0.25"), tax_percent=Decimal(0), is_default=True
        )
    )
    db.session.commit()
    user = users.create_user(email, "password-123", id_tag=id_tag)
    wallet_id = db.session.scalar(select(Wallet.id).where(Wallet.user_id == user.id))
    wallet.top_up(wallet_id, 10_000, reference="seed")
    session = sessions.open_session(user.id, charge_point_id, 1, 3000)
    session.state = SessionState.ACCEPTED
    db.session.commit()
    [transaction_id] = transactions.allocate_transaction_ids(
        [transactions.Start(point.id, 1, id_tag, datetime(2026, 9, 1, 10, 0, tzinfo=UTC), 1000)]
    )
    return {
        "app": app,
        "user_id": user.id,
        "session_id": session.id,
        "transaction_id": transaction_id,
        "wallet_id": wallet_id,
    }
