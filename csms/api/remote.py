"""Calling a charger from a REST view, with the gateway's failures turned into HTTP answers:
404 unknown charger, 422 invalid payload (nothing sent), 409 offline (or, when asked, the call
queued for the charger's return), 504 timeout, 502 CALLERROR."""

from __future__ import annotations

from typing import Any

from flask import current_app
from sqlalchemy import select

from csms.extensions import db
from csms.models import ChargePoint, QueuedCommand
from csms.ocpp.errors import OcppError
from csms.ocpp.session import CallFailed, CallTimeout, ChargerOffline, NotConnected
from csms.services import command_queue
from csms.services.errors import BadGateway, Conflict, GatewayTimeout, InvalidInput, NotFound


def call_charger(
    charge_point_id: str, action: str, payload: dict[str, Any], requested_by: int | None
) -> dict:
    try:
        return _call(charge_point_id, action, payload, requested_by)
    except ChargerOffline:
        raise Conflict(f"charge point {charge_point_id!r} is not connected", code="charger_offline") from None


def call_or_queue(
    charge_point_id: str,
    action: str,
    payload: dict[str, Any],
    requested_by: int | None,
    ttl_seconds: int,
) -> dict | QueuedCommand:
    """Call the charger (its answer) or, when no node holds it, queue the call for its return (the
    queued command, committed): csms.services.command_queue. A call that was under way when the
    charger disconnected is not queued (it may have reached the charger): 409 as without queueing."""
    try:
        return _call(charge_point_id, action, payload, requested_by)
    except NotConnected:  # not sent; a charger lost while the call was under way is 409, not queued
        command = command_queue.enqueue(
            charge_point_id, action, payload, ttl_seconds=ttl_seconds, requested_by=requested_by
        )
        db.session.commit()
        return command


def _call(charge_point_id: str, action: str, payload: dict[str, Any], requested_by: int | None) -> dict:
    """The charger's answer; `ChargerOffline` when it is not connected (`NotConnected` when no node
    holds it: the payload is valid then, the gateway checks it first)."""
    if (
        db.session.scalar(select(ChargePoint.id).where(ChargePoint.charge_point_id == charge_point_id))
        is None
    ):
        raise NotFound(f"unknown charge point {charge_point_id!r}", code="charge_point_not_found")
    db.session.rollback()  # do not hold a database transaction while waiting for the charger
    gateway = current_app.extensions["ocpp"]
    try:
        return gateway.call(charge_point_id, action, payload, requested_by=requested_by)
    except OcppError as exc:
        raise InvalidInput(exc.description, code=exc.code, details=exc.details) from None
    except CallTimeout as exc:
        raise GatewayTimeout(str(exc), code="charger_timeout") from None
    except CallFailed as exc:
        raise BadGateway(
            f"the charger answered {exc.code}: {exc.description}",
            code="charger_error",
            details={"errorCode": exc.code, "errorDescription": exc.description},
        ) from None
