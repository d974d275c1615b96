"""OCPP 1.6 charging profiles (§3.13 Smart Charging, §7.7-7.9): their rules, and what a stack of them
allows at a given instant (the composite schedule a charger applies, §3.13.4).

Pure functions over the profiles' OCPP JSON (`csChargingProfiles`): the REST API checks operators'
profiles with `problems`, and the simulated charger (`csms.sim.obedient`) follows `limit_at`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

from csms.services.clock import parse_utc

MAX_PROFILE = "ChargePointMaxProfile"
TX_DEFAULT = "TxDefaultProfile"
TX = "TxProfile"
PURPOSES = (MAX_PROFILE, TX_DEFAULT, TX)
KINDS = ("Absolute", "Recurring", "Relative")
RECURRENCY = {"Daily": timedelta(days=1), "Weekly": timedelta(weeks=1)}
UNITS = ("A", "W")
# Converting between a power and a per-phase current (a schedule in W on a charger that limits in A).
VOLTAGE = 230


def problems(profile: dict[str, Any], connector_id: int) -> list[str]:
    """What is wrong with a profile for `connector_id`, in plain words (empty: it can be sent)."""
    found = []
    purpose, kind = profile.get("chargingProfilePurpose"), profile.get("chargingProfileKind")
    if purpose == MAX_PROFILE and connector_id != 0:
        found.append("a ChargePointMaxProfile applies to connector 0 (the whole charger)")
    if purpose == TX and connector_id == 0:
        found.append("a TxProfile applies to a connector with a transaction, not connector 0")
    if purpose != TX and profile.get("transactionId") is not None:
        found.append("only a TxProfile names a transactionId")
    if kind == "Recurring" and profile.get("recurrencyKind") not in RECURRENCY:
        found.append("a Recurring profile needs recurrencyKind Daily or Weekly")
    if kind != "Recurring" and profile.get("recurrencyKind") is not None:
        found.append("recurrencyKind is only for Recurring profiles")
    valid_from, valid_to = profile.get("validFrom"), profile.get("validTo")
    if valid_from and valid_to and parse_utc(valid_to) <= parse_utc(valid_from):
        found.append("validTo must be after validFrom")
    schedule = profile.get("chargingSchedule") or {}
    if kind in ("Absolute", "Recurring") and not schedule.get("startSchedule"):
        found.append(f"an {kind} profile needs chargingSchedule.startSchedule")
    periods = schedule.get("chargingSchedulePeriod") or []
    if not periods:
        found.append("chargingSchedulePeriod needs at least one period")
    elif periods[0].get("startPeriod") != 0:
        found.append("the first period must start at 0")
    starts = [p.get("startPeriod", 0) for p in periods]
    if any(later <= earlier for earlier, later in pairwise(starts)):
        found.append("startPeriod must be strictly ascending")
    if any(p.get("limit", 0) < 0 for p in periods):
        found.append("limits must not be negative")
    if any(p.get("numberPhases") not in (None, 1, 2, 3) for p in periods):
        found.append("numberPhases is 1, 2 or 3")
    return found


def _start(profile: dict[str, Any], at: datetime, transaction_start: datetime | None) -> datetime | None:
    """When the profile's schedule (its current recurrence) began, as seen at `at`."""
    schedule = profile["chargingSchedule"]
    kind = profile["chargingProfileKind"]
    if kind == "Relative":  # from the transaction's start; outside a transaction, from now
        return transaction_start or at
    start = parse_utc(schedule["startSchedule"]) if schedule.get("startSchedule") else None
    if start is None:
        return None
    if kind == "Recurring" and at >= start:
        period = RECURRENCY.get(profile.get("recurrencyKind") or "", timedelta(days=1))
        start += period * ((at - start) // period)
    return start


def _limit_of(profile: dict[str, Any], at: datetime, transaction_start: datetime | None) -> tuple | None:
    """(limit, unit, phases) of the profile's period running at `at`, or None when it is not in force."""
    if profile.get("validFrom") and at < parse_utc(profile["validFrom"]):
        return None
    if profile.get("validTo") and at >= parse_utc(profile["validTo"]):
        return None
    start = _start(profile, at, transaction_start)
    if start is None or at < start:
        return None
    schedule = profile["chargingSchedule"]
    elapsed = (at - start).total_seconds()
    if schedule.get("duration") is not None and elapsed >= schedule["duration"]:
        return None
    running = [p for p in schedule["chargingSchedulePeriod"] if p["startPeriod"] <= elapsed]
    if not running:
        return None
    period = running[-1]
    return period["limit"], schedule["chargingRateUnit"], period.get("numberPhases", 3)


def in_amperes(limit: float, unit: str, phases: int) -> float:
    """A limit as a per-phase current."""
    return limit if unit == "A" else limit / (VOLTAGE * phases)


def limit_at(
    profiles: list[dict[str, Any]],
    at: datetime,
    *,
    transaction_id: int | None = None,
    transaction_start: datetime | None = None,
) -> float | None:
    """The per-phase current (A) a connector may draw at `at` under its profiles and its charger's
    (connector 0's) profiles, or None when none is in force (§3.13.4: within a purpose the highest
    stack level in force wins; a TxProfile of the running transaction overrides the TxDefaultProfile;
    the ChargePointMaxProfile caps both)."""

    def winner(purpose: str) -> float | None:
        candidates = [p for p in profiles if p["chargingProfilePurpose"] == purpose]
        if purpose == TX:
            if transaction_id is None:
                return None
            candidates = [p for p in candidates if p.get("transactionId") in (None, transaction_id)]
        for profile in sorted(candidates, key=lambda p: -p["stackLevel"]):
            limit = _limit_of(profile, at, transaction_start)
            if limit is not None:
                return in_amperes(*limit)
        return None

    transaction_limit = winner(TX)
    if transaction_limit is None:
        transaction_limit = winner(TX_DEFAULT)
    cap = winner(MAX_PROFILE)
    limits = [value for value in (transaction_limit, cap) if value is not None]
    return min(limits) if limits else None
