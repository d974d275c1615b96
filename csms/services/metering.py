"""Meter values (OCPP 1.6 §7.31 SampledValue): parsed, normalised to Wh and W, stored once, and turned
into a session's live energy and running cost.

Energy registers are cumulative: a transaction's energy is the highest register reading seen minus
its meterStart, never a sum of readings, so repeated or reordered messages cannot inflate it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from csms.extensions import db
from csms.models import ChargingSession, MeterSample, SessionState, Transaction
from csms.services import billing, bills, bounds
from csms.services.clock import parse_utc
from csms.services.sql import any_of, insert_ignoring_conflicts, update_if_lower

REGISTER = "Energy.Active.Import.Register"
# Unit → (normalised unit, factor)
_UNITS = {
    "Wh": ("Wh", 1),
    "kWh": ("Wh", 1000),
    "varh": ("varh", 1),
    "kvarh": ("varh", 1000),
    "W": ("W", 1),
    "kW": ("W", 1000),
    "VA": ("VA", 1),
    "kVA": ("VA", 1000),
    "var": ("var", 1),
    "kvar": ("var", 1000),
}


def _default_unit(measurand: str) -> str | None:
    # §7.31: energy defaults to Wh, power to W
    if measurand.startswith("Energy.Active"):
        return "Wh"
    if measurand.startswith("Energy.Reactive"):
        return "varh"
    if measurand.startswith("Power.Active"):
        return "W"
    return None


@dataclass(frozen=True)
class Sample:
    sampled_at: datetime
    measurand: str
    phase: str
    location: str
    context: str
    unit: str
    value: Decimal
    raw_value: str
    raw_unit: str | None


def parse(meter_values: list[dict[str, Any]], dropped: list[str] | None = None) -> list[Sample]:
    """Every numeric sampled value, normalised; signed values are skipped, and so are values that
    are not numbers or that no meter reads (NaN, "1e17" Wh: beyond what a sample can store), each
    with its reason added to `dropped`."""
    samples = []
    dropped = [] if dropped is None else dropped
    for meter_value in meter_values:
        at = parse_utc(meter_value["timestamp"])
        for sampled in meter_value.get("sampledValue", []):
            if sampled.get("format") == "SignedData":
                continue
            measurand = sampled.get("measurand", REGISTER)
            raw_unit = sampled.get("unit")
            unit, factor = _UNITS.get(raw_unit or _default_unit(measurand) or "", (raw_unit or "", 1))
            try:
                value = bounds.sample(Decimal(sampled["value"]) * factor)
            except (ArithmeticError, ValueError):  # not a number, or beyond Decimal's exponent
                dropped.append(f"sample {sampled['value'][:40]!r} {measurand} is not a number: dropped")
                continue
            if value is None:
                dropped.append(
                    f"sample {sampled['value'][:40]!r} {measurand} beyond what a meter reads: dropped"
                )
                continue
            samples.append(
                Sample(
                    at,
                    measurand,
                    sampled.get("phase", ""),
                    sampled.get("location", ""),
                    sampled.get("context", "Sample.Periodic"),
                    unit,
                    value,
                    sampled["value"][:64],
                    raw_unit,
                )
            )
    return samples


def register_reading(samples: list[Sample]) -> tuple[int, datetime] | None:
    """The highest total import register (Wh) among the samples, with its time; per-phase and
    non-outlet readings do not count as the total."""
    readings = [
        (int(s.value), s.sampled_at)
        for s in samples
        if s.measurand == REGISTER and s.unit == "Wh" and not s.phase and s.location in ("", "Outlet")
    ]
    return max(readings, key=lambda r: r[0]) if readings else None


def sample_rows(
    charge_point_pk: int, connector_id: int, transaction_id: int | None, samples: list[Sample]
) -> list[dict[str, Any]]:
    return [
        {
            "charge_point_id": charge_point_pk,
            "connector_id": connector_id,
            "transaction_id": transaction_id,
            "sampled_at": s.sampled_at,
            "measurand": s.measurand,
            "phase": s.phase,
            "location": s.location,
            "context": s.context,
            "unit": s.unit,
            "value": s.value,
            "raw_value": s.raw_value,
            "raw_unit": s.raw_unit,
        }
        for s in samples
    ]


def store(rows: list[dict[str, Any]]) -> None:
    """Insert sample rows (see `sample_rows`); a sample already stored is skipped."""
    insert_ignoring_conflicts(
        db.session,
        MeterSample,
        rows,
        ["charge_point_id", "connector_id", "sampled_at", "measurand", "phase", "location", "context"],
        counted=False,
    )


def raise_registers(readings: dict[int, tuple[int, datetime]]) -> None:
    """meter_last_wh = max(meter_last_wh, reading) per transaction, decided by the database; one
    statement for the whole batch."""
    rows = [
        {"id": tid, "meter_last_wh": wh, "meter_last_at": at} for tid, (wh, at) in sorted(readings.items())
    ]
    update_if_lower(db.session, Transaction, "id", "meter_last_wh", rows)


POWER = "Power.Active.Import"


def power_reading(samples: list[Sample]) -> int | None:
    """The latest total active import power among the samples, in W."""
    readings = [
        (s.sampled_at, int(s.value))
        for s in samples
        if s.measurand == POWER and s.unit == "W" and not s.phase
    ]
    return max(readings)[1] if readings else None


@dataclass(frozen=True)
class Progress:
    session_id: int
    user_id: int
    energy_wh: int
    cost_minor: int
    prepaid_minor: int
    exhausted: bool
    seconds_to_budget: float | None = None  # at the current power; None when nothing is drawn


def seconds_to_budget(prices: billing.Prices, remaining_minor: int, power_w: int) -> float | None:
    """How long until the cost grows by `remaining_minor` at `power_w` (and the time price): the
    forecast that lets the CSMS stop a prepaid session before, not after, its budget is spent."""
    per_hour = (Decimal(max(power_w, 0)) / 1000 * prices.energy_price + prices.time_price) * (
        1 + prices.tax_percent / 100
    )
    if per_hour <= 0:
        return None
    return float(Decimal(max(remaining_minor, 0)) / 100 / per_hour * 3600)


def update_sessions(transaction_ids: list[int], power_w: dict[int, int] | None = None) -> dict[int, Progress]:
    """Refresh the live energy and running cost of the sessions charging on these transactions, from
    each transaction's highest reading (so the order metering and linking happen in does not
    matter). Returns the progress per transaction id that has such a session, with the time left to
    its budget at the power measured now (`power_w` by transaction id; else the average so far)."""
    if not transaction_ids:
        return {}
    # Locked, in id order: a settlement that completes one of them meanwhile (it locks the session
    # too) is waited for, and the row then no longer matches, so a running figure never overwrites
    # the billed one.
    sessions = db.session.scalars(
        select(ChargingSession)
        .where(
            any_of(db.session, ChargingSession.transaction_id, transaction_ids),
            ChargingSession.state.in_([SessionState.CHARGING, SessionState.STOPPING]),
        )
        .order_by(ChargingSession.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    if not sessions:
        return {}
    transactions = {
        t.id: t
        for t in db.session.scalars(
            select(Transaction)
            .where(any_of(db.session, Transaction.id, [s.transaction_id for s in sessions]))
            .execution_options(populate_existing=True)
        )
    }
    progress = {}
    for session in sessions:
        transaction = transactions[session.transaction_id]
        prices = bills.prices_of(bills.snapshot(transaction))
        start = transaction.meter_start_wh
        energy = max((transaction.meter_last_wh or start) - start, 0)
        elapsed = (transaction.meter_last_at or transaction.started_at) - transaction.started_at
        running = billing.to_minor(billing.cost(prices, energy, elapsed))
        if energy > session.energy_wh or running > session.cost_minor:
            session.energy_wh = max(energy, session.energy_wh)
            session.cost_minor = max(running, session.cost_minor)
        power = (power_w or {}).get(transaction.id)
        if power is None and elapsed.total_seconds() > 0:
            power = int(energy * 3600 / elapsed.total_seconds())
        progress[transaction.id] = Progress(
            session.id,
            session.user_id,
            session.energy_wh,
            session.cost_minor,
            session.prepaid_minor,
            session.cost_minor >= session.prepaid_minor,
            seconds_to_budget(prices, session.prepaid_minor - session.cost_minor, power or 0),
        )
    return progress


CURRENT = "Current.Import"
POWER = "Power.Active.Import"


def draw(samples: list[Sample]) -> tuple[Decimal | None, Decimal | None, datetime] | None:
    """What a car draws by its latest samples, for load management: (the highest phase's
    Current.Import in A, Power.Active.Import in W (the total, or the sum of the phases), when);
    None when the samples say neither."""
    currents = [s for s in samples if s.measurand == CURRENT and s.unit in ("A", "")]
    powers = [s for s in samples if s.measurand == POWER and s.unit == "W"]
    if not currents and not powers:
        return None
    at = max(s.sampled_at for s in currents + powers)
    current = [s.value for s in currents if s.sampled_at == at]
    power = [s for s in powers if s.sampled_at == at]
    unphased = [s.value for s in power if not s.phase]
    total = unphased[0] if unphased else (sum(s.value for s in power) if power else None)
    return (max(current) if current else None, total, at)
