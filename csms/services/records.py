"""Operators' records (stations, tariffs, charge points): created, changed and deleted with the
database's constraints answered as conflicts. The REST API and the dashboard both come through here;
a charge point's change is announced to every web node (csms.services.chargers)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError

from csms.extensions import db
from csms.models import ChargePoint, Station, Tariff
from csms.models.network import DEFAULT_SECURITY_PROFILE
from csms.schemas.common import INT32_MAX
from csms.services import chargers, credentials
from csms.services.errors import Conflict, NotFound


def commit_or_conflict(message: str) -> None:
    try:
        db.session.commit()
    except IntegrityError as exc:
        db.session.rollback()
        raise Conflict(message, code="conflict", details={"database": str(exc.orig)[:200]}) from None


def get(model: Any, key: int) -> Any:
    found = db.session.get(model, key) if 0 < key <= INT32_MAX else None
    if found is None:
        raise NotFound(f"no {model.__tablename__[:-1]} {key}", code="not_found")
    return found


def check_references(station_id: int | None, tariff_id: int | None) -> None:
    """A charge point's station and tariff, when named, exist (NotFound otherwise)."""
    if station_id is not None:
        get(Station, station_id)
    if tariff_id is not None:
        get(Tariff, tariff_id)


def register_point(fields: dict[str, Any]) -> chargers.Registration:
    """Register a charge point from the fields of the API's `PointCreate` schema (the dashboard's
    form loads the same schema); its station and tariff, when named, must exist."""
    check_references(fields.get("station_id"), fields.get("tariff_id"))
    return chargers.register(
        fields["charge_point_id"],
        fields.get("auth_key"),
        connectors=fields["connectors"],
        station_id=fields.get("station_id"),
        status=fields["registration_status"],
        tariff_id=fields.get("tariff_id"),
        security_profile=fields.get("security_profile", DEFAULT_SECURITY_PROFILE),
    )


def update_point(point: ChargePoint, fields: dict[str, Any]) -> None:
    """Change a charge point's station, tariff, registration status, security profile, maximum
    current or key (fields of the API's `PointUpdate` schema); every node sees the new status,
    profile and key once this commits."""
    check_references(fields.get("station_id"), fields.get("tariff_id"))
    if "security_profile" in fields:
        chargers.validate_security_profile(fields["security_profile"])
    for field in ("station_id", "tariff_id", "registration_status", "security_profile", "max_current_a"):
        if field in fields:
            setattr(point, field, fields[field])
    if "auth_key" in fields:
        point.auth_key_hash = credentials.hash_key(credentials.validate_key(fields["auth_key"]))
    chargers.announce_changed(point.charge_point_id)
    db.session.commit()


def delete_point(point: ChargePoint) -> None:
    """Delete a charge point that never had a transaction (Conflict otherwise); no node lets it
    connect again once this commits."""
    db.session.delete(point)
    chargers.announce_changed(point.charge_point_id)
    commit_or_conflict("a charge point with transactions cannot be deleted")


def create(model: Any, fields: dict[str, Any], entity_type: str) -> Any:
    item = model(**_normalized(model, fields))
    db.session.add(item)
    commit_or_conflict(f"this {entity_type} conflicts with an existing one")
    return item


def update(item: Any, fields: dict[str, Any], entity_type: str) -> Any:
    for field, value in _normalized(type(item), fields).items():
        setattr(item, field, value)
    commit_or_conflict(f"this {entity_type} conflicts with an existing one")
    return item


def delete(item: Any, entity_type: str) -> None:
    db.session.delete(item)
    commit_or_conflict(f"this {entity_type} is still in use")


def _normalized(model: Any, fields: dict[str, Any]) -> dict[str, Any]:
    if model is Tariff and "is_default" in fields:
        # is_default is TRUE or NULL so that the database allows one default only
        fields = {**fields, "is_default": True if fields["is_default"] else None}
    return fields
