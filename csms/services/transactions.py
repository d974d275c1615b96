"""OCPP transactions: the transactionId is decided here, synchronously, when the charger starts one."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from sqlalchemy import and_, or_, select

from csms.extensions import db
from csms.models import Transaction
from csms.services.sql import insert_skipping_conflicts

_START_KEY = ["charge_point_id", "connector_id", "id_tag", "started_at"]


class Start(NamedTuple):
    """A StartTransaction as the charger reported it; the first four fields are its start key."""

    charge_point_id: int
    connector_id: int
    id_tag: str
    started_at: datetime
    meter_start_wh: int
    reservation_id: int | None = None


def allocate_transaction_ids(starts: list[Start]) -> list[int]:
    """Create the transactions in one database transaction and return their ids, in order.

    The database counter makes an id unique across restarts and web nodes. A StartTransaction the
    charger resends (same connector, idTag and timestamp) gets the id it was given the first time:
    the start key is unique, so a conflicting row is skipped and the existing id read back, and two
    nodes racing on the same resend (or one batch holding it twice) agree on one id.
    """
    table = Transaction.__table__
    rows = [
        {
            "charge_point_id": start.charge_point_id,
            "connector_id": start.connector_id,
            "id_tag": start.id_tag,
            "started_at": start.started_at,
            "meter_start_wh": start.meter_start_wh,
            "meter_last_wh": start.meter_start_wh,
            "reservation_id": start.reservation_id,
        }
        for start in starts
    ]
    keys = [table.c[name] for name in _START_KEY]
    new = insert_skipping_conflicts(db.session, Transaction, _START_KEY).returning(table.c.id, *keys)
    try:
        ids = {tuple(row[1:]): row[0] for row in db.session.execute(new, rows)}
        missing = {start[:4] for start in starts} - ids.keys()
        if missing:
            existing = select(table.c.id, *keys).where(
                or_(*(and_(*(c == v for c, v in zip(keys, key, strict=True))) for key in missing))
            )
            ids.update({tuple(row[1:]): row[0] for row in db.session.execute(existing)})
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return [ids[start[:4]] for start in starts]
