"""MeterValues: samples stored once, the transaction's register raised, the session's live energy
and running cost updated, and a remote stop requested when the prepaid amount is used up."""

from __future__ import annotations

import dramatiq

from actors.exchanges import Exchange, Notifications
from actors.storage import apply_charger_state
from csms.extensions import db
from csms.models import Transaction
from csms.realtime import charger_room, customer_room
from csms.services import charger_state, charging, message_log, metering
from csms.services.money import format_minor


@dramatiq.actor(queue_name="metering", max_retries=20, min_backoff=500, max_backoff=120_000)
def process_meter_values(exchange: dict) -> None:
    """Apply one MeterValues exchange; a redelivery stores nothing new and changes no total."""
    message_log.record(exchange)
    view = Exchange(exchange)
    notifications = Notifications()
    apply_charger_state(view, notifications)
    if view.answered:
        record(view, notifications)
    db.session.commit()
    notifications.publish()


def record(view: Exchange, notifications: Notifications) -> None:
    payload = view.request
    pk = charger_state.charge_point_pk(view.charge_point_id)
    if pk is None:
        return
    transaction_id = payload.get("transactionId")
    # Locked: see `charging.link_session` (the two must not interleave).
    transaction = (
        db.session.get(Transaction, transaction_id, with_for_update=True)
        if transaction_id is not None
        else None
    )
    if transaction is not None and transaction.charge_point_id != pk:
        transaction = None  # another charger's id: keep the samples, do not touch that transaction
    samples = metering.parse(payload["meterValue"])
    metering.store(pk, payload["connectorId"], transaction.id if transaction else None, samples)
    event = {
        "chargePointId": view.charge_point_id,
        "connectorId": payload["connectorId"],
        "transactionId": transaction_id,
        "samples": [
            {
                "timestamp": s.sampled_at.isoformat(),
                "measurand": s.measurand,
                "phase": s.phase or None,
                "value": str(s.value),
                "unit": s.unit,
            }
            for s in samples[:50]
        ],
    }
    rooms = [charger_room(view.charge_point_id)]
    reading = metering.register_reading(samples)
    if transaction is not None and reading is not None:
        metering.raise_register(transaction.id, reading[0], reading[1])
        db.session.flush()
        db.session.refresh(transaction)
        progress = charging.refresh_progress(transaction.id, view.charge_point_id)
        if progress is not None:
            rooms.append(customer_room(progress.user_id))
            event.update(
                sessionId=progress.session_id,
                energyWh=progress.energy_wh,
                cost=format_minor(progress.cost_minor),
            )
    notifications.add("meter:values", event, rooms)
