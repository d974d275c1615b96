"""Demo data for a first look: one station, one charger, a default tariff, an operator and a funded
customer. Idempotent: a second run changes nothing and prints the same credentials.

The generated secrets are kept in the instance folder (`demo-credentials.json`, readable by the owner
only) because the database stores only their hashes and `make run` prints them on every start.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path

from sqlalchemy import select

from csms.extensions import db
from csms.models import ChargePoint, IdTag, Role, Station, Tariff, User, Wallet
from csms.services import chargers, credentials, users, wallet

DEMO_CHARGER = "CP-DEMO-1"
DEMO_OPERATOR = "operator@demo.local"
DEMO_CUSTOMER = "customer@demo.local"
DEMO_ID_TAG = "DEMO-TAG-1"
DEMO_FUNDS_MINOR = 50_00


@dataclass
class DemoCredentials:
    charge_point_id: str
    auth_key: str
    operator_email: str
    operator_password: str
    customer_email: str
    customer_password: str
    id_tag: str


def _load_or_create_credentials(path: Path) -> DemoCredentials:
    if path.exists():
        return DemoCredentials(**json.loads(path.read_text()))
    creds = DemoCredentials(
        charge_point_id=DEMO_CHARGER,
        auth_key=credentials.generate_key(),
        operator_email=DEMO_OPERATOR,
        operator_password=secrets.token_urlsafe(12),
        customer_email=DEMO_CUSTOMER,
        customer_password=secrets.token_urlsafe(12),
        id_tag=DEMO_ID_TAG,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(asdict(creds), handle, indent=2)
    return creds


def seed(credentials_path: Path) -> DemoCredentials:
    creds = _load_or_create_credentials(credentials_path)

    tariff = db.session.scalar(select(Tariff).where(Tariff.is_default.is_(True)))
    if tariff is None:
        tariff = Tariff(
            name="Standard",
            currency="EUR",
            energy_price=Decimal("0.3000"),
            time_price=Decimal("0.0000"),
            session_fee=Decimal("0.5000"),
            tax_percent=Decimal("20.00"),
            is_default=True,
        )
        db.session.add(tariff)

    station = db.session.scalar(select(Station).where(Station.name == "Demo Station"))
    if station is None:
        station = Station(name="Demo Station", address="1 Demo Street")
        db.session.add(station)
    db.session.commit()

    point = db.session.scalar(select(ChargePoint).where(ChargePoint.charge_point_id == DEMO_CHARGER))
    if point is None:
        chargers.register(DEMO_CHARGER, creds.auth_key, connectors=2, station_id=station.id)
    elif not credentials.verify_key(creds.auth_key, point.auth_key_hash):
        # The database was reset but the credentials file kept: make the printed key true again.
        point.auth_key_hash = credentials.hash_key(creds.auth_key)
        chargers.announce_changed(DEMO_CHARGER)
        db.session.commit()

    for email, password, role, id_tag in (
        (creds.operator_email, creds.operator_password, Role.OPERATOR, None),
        (creds.customer_email, creds.customer_password, Role.CUSTOMER, creds.id_tag),
    ):
        if db.session.scalar(select(User.id).where(User.email == email)) is None:
            if id_tag and db.session.scalar(select(IdTag.id).where(IdTag.id_tag == id_tag)):
                id_tag = None
            users.create_user(email, password, role=role, id_tag=id_tag)

    customer_wallet = db.session.scalar(
        select(Wallet).join(User, User.id == Wallet.user_id).where(User.email == creds.customer_email)
    )
    if customer_wallet is not None:
        wallet.top_up(customer_wallet.id, DEMO_FUNDS_MINOR, reference="demo-seed", description="Demo funds")
    return creds
