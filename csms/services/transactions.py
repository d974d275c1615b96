"""OCPP transactions: the transactionId is decided here, synchronously, when the charger starts one."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from csms.extensions import db
from csms.models import Transaction


def allocate_transaction_id(
    charge_point_pk: int,
    connector_id: int,
    id_tag: str,
    meter_start_wh: int,
    started_at: datetime,
    reservation_id: int | None = None,
) -> int:
    """Create the transaction row and return its id, the OCPP transactionId.

    The database counter makes the id unique across restarts and web nodes. A StartTransaction the
    charger resends (same connector, idTag and timestamp) gets the id it was given the first time:
    the start key is unique, so two nodes racing on the same resend also agree on one id.
    """
    key = (
        Transaction.charge_point_id == charge_point_pk,
        Transaction.connector_id == connector_id,
        Transaction.id_tag == id_tag,
        Transaction.started_at == started_at,
    )
    # A Core insert: the ORM's unit of work costs more than the rest of a StartTransaction round trip.
    new = (
        insert(Transaction.__table__)
        .values(
            charge_point_id=charge_point_pk,
            connector_id=connector_id,
            id_tag=id_tag,
            meter_start_wh=meter_start_wh,
            meter_last_wh=meter_start_wh,
            started_at=started_at,
            reservation_id=reservation_id,
        )
        .returning(Transaction.__table__.c.id)
    )
    try:
        transaction_id = db.session.execute(new).scalar_one()
        db.session.commit()
        return transaction_id
    except IntegrityError:
        db.session.rollback()
        existing = db.session.scalar(select(Transaction.id).where(*key))
        db.session.rollback()
        if existing is None:
            raise
        return existing
