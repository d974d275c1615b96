"""MeterValues: samples stored once, each transaction's register raised, the sessions' live energy
and running cost updated, and a remote stop requested when a prepaid amount is used up."""

from __future__ import annotations

from datetime import datetime

import dramatiq
from flask import current_app

from actors import priorities
from actors.batch import run_batch
from actors.exchanges import Exchange, Notifications
from actors.storage import store_and_apply_charger_state
from csms.realtime import charger_room, customer_room
from csms.services import bounds, charger_state, charging, events, metering, site_load
from csms.services.money import format_minor


@dramatiq.actor(
    queue_name="metering", max_retries=20, min_backoff=500, max_backoff=120_000, priority=priorities.METERING
)
def process_meter_values(exchanges: list) -> None:
    """Apply a batch of MeterValues exchanges; a redelivery stores nothing new and changes no total."""
    run_batch(process_meter_values, exchanges, apply_meter_values)


def apply_meter_values(views: list[Exchange], notifications: Notifications) -> None:
    from actors.load import reallocate_sites

    store_and_apply_charger_state(views, notifications)
    answered = [view for view in views if view.answered]
    if not answered:
        return
    pks = charger_state.charge_point_pks(view.charge_point_id for view in answered)
    # see `charging.link_session`: linking and metering one transaction must not interleave
    transactions = charging.lock_transactions(bounds.int32(v.request.get("transactionId")) for v in answered)
    rows: list[dict] = []
    readings: dict[int, tuple[int, datetime]] = {}
    power: dict[int, int] = {}
    charger_of: dict[int, str] = {}
    parsed = []
    draws: dict[int, tuple] = {}
    for view in answered:
        pk = pks.get(view.charge_point_id)
        if pk is None:
            continue
        payload = view.request
        transaction_id = payload.get("transactionId")
        if transactions.get(transaction_id) != pk:
            transaction_id = None  # unknown, or another charger's: keep the samples, touch no transaction
        samples = metering.parse(payload["meterValue"], view.notes)
        connector_id = bounds.int32(payload["connectorId"])
        if connector_id is None:
            view.notes.append(f"connectorId {payload['connectorId']} out of range: samples not stored")
        else:
            rows += metering.sample_rows(pk, connector_id, transaction_id, samples)
        reading = metering.register_reading(samples)
        if transaction_id is not None:
            draw = metering.draw(samples)
            if draw is not None and (transaction_id not in draws or draws[transaction_id][2] <= draw[2]):
                draws[transaction_id] = draw
        if transaction_id is not None and reading is not None:
            readings[transaction_id] = max(readings.get(transaction_id, reading), reading)
            charger_of[transaction_id] = view.charge_point_id
        watts = metering.power_reading(samples)
        if transaction_id is not None and watts is not None:
            power[transaction_id] = watts
        parsed.append((view, pk, transaction_id, samples))
    metering.store(rows)
    metering.raise_registers(readings)
    progress = charging.refresh_progress(charger_of, power, current_app.config["BUDGET_MARGIN_SECONDS"])
    for station_id, reason in sorted(site_load.record_draws(draws).items()):
        notifications.send_after(reallocate_sites, [{"station_id": station_id, "reason": reason}])
    announced = []
    for view, pk, transaction_id, samples in parsed:
        event, data, rooms = _meter_event(view, samples, progress.get(transaction_id))
        notifications.add(event, data, rooms, charger_id=pk)
        announced.append(("meter.values.updated", data, view.first["event_id"]))
    events.emit_many(announced)


def _meter_event(view: Exchange, samples: list[metering.Sample], progress: metering.Progress | None):
    payload = view.request
    event = {
        "chargePointId": view.charge_point_id,
        "connectorId": payload["connectorId"],
        "transactionId": payload.get("transactionId"),
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
    if progress is not None:
        rooms.append(customer_room(progress.user_id))
        event.update(
            sessionId=progress.session_id,
            energyWh=progress.energy_wh,
            cost=format_minor(progress.cost_minor),
        )
    return "meter:values", event, rooms
