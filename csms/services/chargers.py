"""Registering charge points, one at a time or a whole fleet at once, and telling every web node.

Each web node caches who may connect (csms.ocpp.gateway.ChargerAuthenticator). Every change to a
charger's record that decides that (created, key, registration status, security profile, deleted)
announces itself in its transaction (csms.cluster.broadcast): every node drops what it knew of the
charger when, and only if, the change commits. A fleet import announces once, and every node
reloads its directory.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import insert, select

from csms.cluster import broadcast
from csms.extensions import db
from csms.models import ChargePoint, Connector, RegistrationStatus
from csms.models.network import DEFAULT_SECURITY_PROFILE, SECURITY_PROFILES
from csms.services import credentials
from csms.services.errors import Conflict, InvalidInput

# The identity is the last segment of the charger's URL and the user name of its Basic auth, so it
# holds URL-safe characters only and never a colon; OCPP 1.6 allows at most 48 of them.
_CHARGE_POINT_ID = re.compile(r"^[A-Za-z0-9._~-]{1,48}$")
MAX_CONNECTORS = 32

# The announcements every node's charger directory follows.
CHANGED = "charger"  # key: the chargePointId whose record changed (or was deleted)
MANY_CHANGED = "chargers"  # a batch changed: reload the directory (key: how many, for the log)


def announce_changed(charge_point_id: str) -> None:
    """Every node forgets what it knew of this charger once the current transaction commits."""
    broadcast.announce(CHANGED, charge_point_id)


def validate_charge_point_id(charge_point_id: str) -> str:
    if not _CHARGE_POINT_ID.match(charge_point_id):
        raise InvalidInput(
            f"invalid chargePointId {charge_point_id!r}: 1 to 48 of A-Z a-z 0-9 . _ ~ -",
            code="invalid_charge_point_id",
        )
    return charge_point_id


def validate_security_profile(profile: int) -> int:
    if profile not in SECURITY_PROFILES:
        raise InvalidInput(
            f"securityProfile must be one of {', '.join(map(str, SECURITY_PROFILES))}, got {profile!r}",
            code="invalid_security_profile",
        )
    return profile


def _validate_connectors(count: int) -> int:
    if not 0 <= count <= MAX_CONNECTORS:
        raise InvalidInput(f"connectors must be between 0 and {MAX_CONNECTORS}", code="invalid_connectors")
    return count


def _connector_rows(charge_point_pk: int, count: int) -> list[dict]:
    # Connector 0 stands for the whole charge point; it gets a row like the others.
    return [{"charge_point_id": charge_point_pk, "connector_id": n} for n in range(count + 1)]


@dataclass(frozen=True)
class Registration:
    charge_point_id: str
    auth_key: str
    generated: bool


def register(
    charge_point_id: str,
    auth_key: str | None = None,
    *,
    connectors: int = 1,
    station_id: int | None = None,
    status: str = RegistrationStatus.ACCEPTED,
    tariff_id: int | None = None,
    security_profile: int = DEFAULT_SECURITY_PROFILE,
) -> Registration:
    """Register one charger; generates its key unless one is given (a profile-0 charger presents
    none, but keeps one for the day it is moved to profile 1). The key is returned once, never stored."""
    validate_charge_point_id(charge_point_id)
    _validate_connectors(connectors)
    validate_security_profile(security_profile)
    generated = auth_key is None
    key = credentials.generate_key() if generated else credentials.validate_key(auth_key)
    if db.session.scalar(select(ChargePoint.id).where(ChargePoint.charge_point_id == charge_point_id)):
        raise Conflict(f"charge point {charge_point_id!r} already exists", code="charge_point_exists")
    point = ChargePoint(
        charge_point_id=charge_point_id,
        auth_key_hash=credentials.hash_key(key),
        registration_status=status,
        station_id=station_id,
        tariff_id=tariff_id,
        security_profile=security_profile,
    )
    db.session.add(point)
    db.session.flush()
    db.session.execute(insert(Connector), _connector_rows(point.id, connectors))
    announce_changed(charge_point_id)
    db.session.commit()
    return Registration(charge_point_id, key, generated)


@dataclass(frozen=True)
class ImportResult:
    created: int
    skipped: int


def import_fleet(
    rows: Iterable[tuple[int, str, str]],
    *,
    connectors: int = 1,
    skip_existing: bool = False,
    security_profile: int = DEFAULT_SECURITY_PROFILE,
) -> ImportResult:
    """Register many chargers in one transaction: all rows are checked first, then none or all land.

    `rows` are `(line_number, chargePointId, authKey)`. Every problem found is reported at once, by
    line, in the error's details, so a fleet file can be fixed in one pass.
    """
    _validate_connectors(connectors)
    validate_security_profile(security_profile)
    problems: dict[str, str] = {}
    seen: dict[str, int] = {}
    parsed: list[tuple[str, str]] = []
    for line, charge_point_id, key in rows:
        try:
            validate_charge_point_id(charge_point_id)
            credentials.validate_key(key)
        except InvalidInput as exc:
            problems[f"line {line}"] = exc.message
            continue
        if charge_point_id in seen:
            problems[f"line {line}"] = f"duplicate of line {seen[charge_point_id]}"
            continue
        seen[charge_point_id] = line
        parsed.append((charge_point_id, key))

    existing = set()
    ids = [cp for cp, _ in parsed]
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        existing.update(
            db.session.scalars(
                select(ChargePoint.charge_point_id).where(ChargePoint.charge_point_id.in_(chunk))
            )
        )
    if existing and not skip_existing:
        for cp in sorted(existing):
            problems[f"line {seen[cp]}"] = f"charge point {cp!r} already exists"
    if problems:
        raise InvalidInput(
            f"{len(problems)} invalid row(s); nothing imported", code="invalid_rows", details=problems
        )

    new = [(cp, key) for cp, key in parsed if cp not in existing]
    for start in range(0, len(new), 1000):
        chunk = new[start : start + 1000]
        created = db.session.execute(
            insert(ChargePoint).returning(ChargePoint.id),
            [
                {
                    "charge_point_id": cp,
                    "auth_key_hash": credentials.hash_key(key),
                    "registration_status": RegistrationStatus.ACCEPTED,
                    "security_profile": security_profile,
                }
                for cp, key in chunk
            ],
        ).scalars()
        connector_rows = [row for pk in created for row in _connector_rows(pk, connectors)]
        if connector_rows:
            db.session.execute(insert(Connector), connector_rows)
    if new:  # one announcement for the batch, not one per charger
        broadcast.announce(MANY_CHANGED, str(len(new)))
    db.session.commit()
    return ImportResult(created=len(new), skipped=len(existing))


def registration_status(charge_point_pk: int) -> str | None:
    """The operator's current decision on a charger (None if it was deleted). Ends its read transaction."""
    status = db.session.scalar(
        select(ChargePoint.registration_status).where(ChargePoint.id == charge_point_pk)
    )
    db.session.rollback()
    return status


def parse_boot_configuration(text: str) -> list[tuple[str, str]]:
    """`Key=Value,Key=Value` → pairs; the configuration pushed after an accepted BootNotification."""
    pairs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"CSMS_BOOT_CONFIGURATION: expected Key=Value, got {item!r}")
        pairs.append((key.strip(), value.strip()))
    return pairs
