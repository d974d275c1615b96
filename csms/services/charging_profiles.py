"""Operators' charging profiles (OCPP 1.6 Smart Charging): stored per charger and connector, sent
with SetChargingProfile, cleared with ClearChargingProfile, each answer of the charger recorded; and
the charger's composite schedule on demand (GetCompositeSchedule).

The profile is stored before it is sent, so nothing sent goes unrecorded; its status then says what
came of it: the charger's answer (Accepted, Rejected, NotSupported), or `failed` with the reason
(offline, no answer, CALLERROR)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from csms.extensions import db
from csms.models import ChargePoint, ChargingProfile
from csms.services import charging_schedules, records
from csms.services.errors import Conflict, InvalidInput, NotFound
from csms.services.load_management import Call, Calls


def _charger(charge_point_id: str) -> ChargePoint:
    charger = db.session.scalar(select(ChargePoint).where(ChargePoint.charge_point_id == charge_point_id))
    if charger is None:
        raise NotFound(f"unknown charge point {charge_point_id!r}", code="charge_point_not_found")
    return charger


def _outcome(row: ChargingProfile, answer: Any) -> None:
    row.answered_at = datetime.now(UTC)
    if isinstance(answer, dict):
        row.status, row.response, row.error = answer.get("status", "failed"), answer, None
    else:
        row.status, row.error = "failed", (f"{type(answer).__name__}: {answer}")[:255]


def create(
    charge_point_id: str,
    connector_id: int,
    profile: dict[str, Any],
    calls: Calls,
    timeout: float,
    user_id: int | None,
) -> ChargingProfile:
    """Store the profile, send it, record the answer; committed."""
    found = charging_schedules.problems(profile, connector_id)
    if found:
        raise InvalidInput("; ".join(found), code="invalid_charging_profile", details={"problems": found})
    charger = _charger(charge_point_id)
    row = ChargingProfile(
        charge_point_id=charger.id,
        connector_id=connector_id,
        profile_id=profile["chargingProfileId"],
        purpose=profile["chargingProfilePurpose"],
        stack_level=profile["stackLevel"],
        transaction_id=profile.get("transactionId"),
        profile=profile,
        source="operator",
        status="pending",
        created_by=user_id,
    )
    db.session.add(row)
    db.session.commit()  # recorded before it leaves; no transaction open while the charger answers
    payload = {"connectorId": connector_id, "csChargingProfiles": profile}
    [answer] = calls([Call(charge_point_id, "SetChargingProfile", payload)], timeout)
    _outcome(row, answer)
    db.session.commit()
    return row


def get(profile_pk: int) -> ChargingProfile:
    return records.get(ChargingProfile, profile_pk)


def listing(args: dict[str, Any]) -> Any:
    """The query of the profiles `args` select (newest first is the caller's order)."""
    query = select(ChargingProfile)
    if args.get("charge_point_id"):
        query = query.join(ChargePoint, ChargePoint.id == ChargingProfile.charge_point_id).where(
            ChargePoint.charge_point_id == args["charge_point_id"]
        )
    if args.get("connector_id") is not None:
        query = query.where(ChargingProfile.connector_id == args["connector_id"])
    if args.get("source"):
        query = query.where(ChargingProfile.source == args["source"])
    if not args.get("cleared"):
        query = query.where(ChargingProfile.status != "cleared")
    return query


def clear(profile_pk: int, calls: Calls, timeout: float) -> ChargingProfile:
    """ClearChargingProfile by its id; cleared when the charger accepts, or no longer has it
    (Unknown). A charger out of reach or refusing leaves it as it was: 409."""
    row = get(profile_pk)
    if row.status == "cleared":
        raise Conflict(f"charging profile {profile_pk} is already cleared", code="charging_profile_cleared")
    charge_point_id = row.charger.charge_point_id
    db.session.commit()
    [answer] = calls([Call(charge_point_id, "ClearChargingProfile", {"id": row.profile_id})], timeout)
    if not isinstance(answer, dict):
        raise Conflict(f"{charge_point_id} did not clear it: {answer}", code="charger_unreachable")
    row.response = answer
    if answer.get("status") in ("Accepted", "Unknown"):
        row.status, row.cleared_at = "cleared", datetime.now(UTC)
    db.session.commit()
    return row


def composite(
    charge_point_id: str, connector_id: int, duration: int, unit: str | None, calls: Calls, timeout: float
) -> dict[str, Any]:
    """The charger's own composite schedule for a connector over `duration` seconds."""
    _charger(charge_point_id)
    db.session.commit()
    payload: dict[str, Any] = {"connectorId": connector_id, "duration": duration}
    if unit:
        payload["chargingRateUnit"] = unit
    [answer] = calls([Call(charge_point_id, "GetCompositeSchedule", payload)], timeout)
    if not isinstance(answer, dict):
        raise Conflict(f"{charge_point_id} did not answer: {answer}", code="charger_unreachable")
    return answer


def of_charger(charge_point_pk: int, limit: int = 10) -> list[ChargingProfile]:
    """A charger's profiles in force (not cleared), newest first: its page shows them."""
    return list(
        db.session.scalars(
            select(ChargingProfile)
            .where(ChargingProfile.charge_point_id == charge_point_pk, ChargingProfile.status != "cleared")
            .order_by(ChargingProfile.id.desc())
            .limit(limit)
        )
    )


def first_limit(profile: dict[str, Any]) -> str:
    """A profile's schedule in a few words: its first limit and unit, and how many periods follow."""
    schedule = profile.get("chargingSchedule") or {}
    periods = schedule.get("chargingSchedulePeriod") or [{}]
    more = f" (+{len(periods) - 1} periods)" if len(periods) > 1 else ""
    return f"{periods[0].get('limit')} {schedule.get('chargingRateUnit', '')}{more}"
