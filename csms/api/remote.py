"""Calling a charger from a REST view, with the gateway's failures turned into HTTP answers:
404 unknown charger, 422 invalid payload (nothing sent), 409 offline, 504 timeout, 502 CALLERROR."""

from __future__ import annotations

from typing import Any

from flask import current_app
from sqlalchemy import select

from csms.extensions import db
from csms.models import ChargePoint
from csms.ocpp.errors import OcppError
from csms.ocpp.session import CallFailed, CallTimeout, ChargerOffline
from csms.services.errors import BadGateway, Conflict, GatewayTimeout, InvalidInput, NotFound


def call_charger(
    charge_point_id: str, action: str, payload: dict[str, Any], requested_by: int | None
) -> dict:
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
    except ChargerOffline:
        raise Conflict(f"charge point {charge_point_id!r} is not connected", code="charger_offline") from None
    except CallTimeout as exc:
        raise GatewayTimeout(str(exc), code="charger_timeout") from None
    except CallFailed as exc:
        raise BadGateway(
            f"the charger answered {exc.code}: {exc.description}",
            code="charger_error",
            details={"errorCode": exc.code, "errorDescription": exc.description},
        ) from None
