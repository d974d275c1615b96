"""OCPP 1.6 charging profiles as pure data (csms.services.charging_schedules): the rules a profile
must keep, and the limit a stack of profiles sets at an instant (§3.13.4), as the simulated charger
applies it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from csms.services.charging_schedules import limit_at, problems
from csms.services.metering import Sample, draw

T0 = datetime(2030, 1, 1, 8, 0, tzinfo=UTC)


def profile(purpose="TxDefaultProfile", level=0, kind="Absolute", periods=((0, 16),), unit="A", **extra):
    schedule = {
        "chargingRateUnit": unit,
        "chargingSchedulePeriod": [{"startPeriod": s, "limit": limit} for s, limit in periods],
    }
    if kind != "Relative":
        schedule["startSchedule"] = T0.isoformat()
    body = {
        "chargingProfileId": level + 1,
        "stackLevel": level,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": kind,
        "chargingSchedule": schedule,
    }
    return {**body, **extra}


def test_a_valid_profile_has_no_problem():
    assert problems(profile(periods=((0, 16), (600, 8))), 1) == []


def test_each_rule_is_named():
    assert problems(profile(purpose="TxProfile"), 0) == [
        "a TxProfile applies to a connector with a transaction, not connector 0"
    ]
    assert problems(profile(transactionId=5), 1) == ["only a TxProfile names a transactionId"]
    assert problems(profile(kind="Absolute", periods=((0, 6),)) | {"recurrencyKind": "Daily"}, 1) == [
        "recurrencyKind is only for Recurring profiles"
    ]
    assert problems(profile(periods=((0, 6), (0, 8))), 1) == ["startPeriod must be strictly ascending"]
    assert problems(profile(periods=((0, -1),)), 1) == ["limits must not be negative"]


def test_the_highest_stack_level_in_force_wins_and_periods_follow_time():
    stack = [profile(level=0, periods=((0, 16),)), profile(level=1, periods=((0, 10), (3600, 6)))]
    assert limit_at(stack, T0 + timedelta(minutes=5)) == 10
    assert limit_at(stack, T0 + timedelta(hours=2)) == 6
    assert limit_at(stack, T0 - timedelta(minutes=1)) is None  # nothing in force before it starts


def test_a_tx_profile_overrides_the_default_and_the_charger_maximum_caps_both():
    stack = [
        profile("TxDefaultProfile", periods=((0, 0),)),
        profile("TxProfile", level=1, kind="Relative", periods=((0, 20),), transactionId=7),
        profile("ChargePointMaxProfile", periods=((0, 13),)),
    ]
    at = T0 + timedelta(minutes=1)
    assert limit_at(stack, at) == 0  # no transaction: the default
    assert limit_at(stack, at, transaction_id=7, transaction_start=T0) == 13
    assert limit_at(stack, at, transaction_id=8, transaction_start=T0) == 0  # another transaction's


def test_recurring_validity_and_watts():
    daily = profile(kind="Recurring", recurrencyKind="Daily", periods=((0, 8), (3600, 16)))
    assert limit_at([daily], T0 + timedelta(days=3, minutes=30)) == 8
    assert limit_at([daily], T0 + timedelta(days=3, hours=2)) == 16
    expired = profile(validTo=(T0 + timedelta(hours=1)).isoformat())
    assert limit_at([expired], T0 + timedelta(hours=2)) is None
    watts = profile(unit="W", periods=((0, 6900),))
    assert limit_at([watts], T0) == 10  # 6.9 kW on three phases of 230 V


def sample(measurand, value, unit, phase=""):
    return Sample(T0, measurand, phase, "", "Sample.Periodic", unit, Decimal(value), value, unit)


def test_a_car_draw_is_its_highest_phase_current_and_its_total_power():
    samples = [
        sample("Current.Import", "6.1", "A", "L1"),
        sample("Current.Import", "6.4", "A", "L2"),
        sample("Power.Active.Import", "2000", "W", "L1"),
        sample("Power.Active.Import", "2100", "W", "L2"),
        sample("Energy.Active.Import.Register", "100", "Wh"),
    ]
    assert draw(samples) == (Decimal("6.4"), Decimal("4100"), T0)
    assert draw([sample("Energy.Active.Import.Register", "100", "Wh")]) is None
