"""What chargers tell about themselves: identity (BootNotification), connector states
(StatusNotification) and when they were last heard from.

Messages arrive in any order and possibly twice, so every update is conditional on the charger's own
timestamp: an older message never overwrites what a newer one set.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, update

from csms.extensions import db
from csms.models import ChargePoint, Connector
from csms.services.sql import any_of, insert_ignoring_conflicts, update_if_lower

_BOOT_FIELDS = {
    "chargePointVendor": "vendor",
    "chargePointModel": "model",
    "chargePointSerialNumber": "serial_number",
    "chargeBoxSerialNumber": "serial_number",
    "firmwareVersion": "firmware_version",
    "iccid": "iccid",
    "imsi": "imsi",
    "meterType": "meter_type",
    "meterSerialNumber": "meter_serial_number",
}


def charge_point_pk(charge_point_id: str) -> int | None:
    return db.session.scalar(select(ChargePoint.id).where(ChargePoint.charge_point_id == charge_point_id))


def charge_point_pks(charge_point_ids: Iterable[str]) -> dict[str, int]:
    rows = db.session.execute(
        select(ChargePoint.charge_point_id, ChargePoint.id).where(
            any_of(db.session, ChargePoint.charge_point_id, set(charge_point_ids))
        )
    )
    return {charge_point_id: pk for charge_point_id, pk in rows}


def identities(charge_point_ids: Iterable[str], pks: Iterable[int]) -> list[tuple[int, str]]:
    """`(pk, chargePointId)` of the chargers named by either id."""
    ids, keys = set(charge_point_ids), set(pks)
    conditions = []
    if ids:
        conditions.append(any_of(db.session, ChargePoint.charge_point_id, ids))
    if keys:
        conditions.append(any_of(db.session, ChargePoint.id, keys))
    if not conditions:
        return []
    rows = db.session.execute(select(ChargePoint.id, ChargePoint.charge_point_id).where(or_(*conditions)))
    return [(pk, charge_point_id) for pk, charge_point_id in rows]


def touch(last_seen: dict[str, datetime]) -> None:
    """Raise each charger's `last_seen_at` to the given time: one statement for the whole batch, in
    charger order so that two workers touching the same chargers cannot deadlock."""
    rows = [{"charge_point_id": cp, "last_seen_at": last_seen[cp]} for cp in sorted(last_seen)]
    update_if_lower(db.session, ChargePoint, "charge_point_id", "last_seen_at", rows)


def apply_boot(charge_point_id: str, payload: dict[str, Any], at: datetime) -> bool:
    values = {column: payload[field] for field, column in _BOOT_FIELDS.items() if field in payload}
    result = db.session.execute(
        update(ChargePoint)
        .where(ChargePoint.charge_point_id == charge_point_id)
        .where(or_(ChargePoint.last_boot_at.is_(None), ChargePoint.last_boot_at < at))
        .values(last_boot_at=at, **values)
    )
    return result.rowcount == 1


def ensure_connectors(connectors: Iterable[tuple[int, int, str]]) -> None:
    """Create the connectors `(charger key, connector id, status)` a batch's StatusNotifications
    name and the charger never declared, in one statement; existing ones are left alone."""
    rows = [{"charge_point_id": pk, "connector_id": c, "status": status} for pk, c, status in connectors]
    if rows:
        insert_ignoring_conflicts(db.session, Connector, rows, ["charge_point_id", "connector_id"])


def apply_status(pk: int, payload: dict[str, Any], at: datetime) -> bool:
    """Set a connector's status if this notification is newer than the stored one; connector 0 is the
    charge point itself (its row made by `ensure_connectors`). Returns True when the stored state
    changed."""
    connector_id = payload["connectorId"]
    result = db.session.execute(
        update(Connector)
        .where(Connector.charge_point_id == pk, Connector.connector_id == connector_id)
        .where(or_(Connector.status_at.is_(None), Connector.status_at < at))
        .values(
            status=payload["status"],
            error_code=payload["errorCode"],
            info=payload.get("info"),
            vendor_id=payload.get("vendorId"),
            vendor_error_code=payload.get("vendorErrorCode"),
            status_at=at,
        )
    )
    return result.rowcount == 1
