"""What the answers to CSMS-initiated calls change beyond their audit: a reservation accepted or
rejected, a firmware or diagnostics target acknowledged, a maintenance outcome kept on the charger's
record. Called by the `commands` actor once per call (its audit row decides "once"), whether the
call came from a REST view or the offline queue (`command_id` then names the queued command)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from csms.extensions import db
from csms.models import ChargePoint
from csms.services import diagnostics, firmware, maintenance, reservations


def apply(
    charge_point_id: str, action: str | None, request: dict[str, Any], command: dict[str, Any], at: datetime
) -> None:
    outcome = command.get("outcome") or "unknown"
    response = command.get("response")
    command_id = command.get("command_id")
    if action == "UpdateFirmware" and command_id:
        firmware.apply_answer(command_id, outcome, at)
    elif action == "GetDiagnostics" and command_id:
        diagnostics.apply_answer(command_id, outcome, response, at)
    elif action == "ReserveNow" or action in maintenance.RECORDED:
        pk = db.session.scalar(select(ChargePoint.id).where(ChargePoint.charge_point_id == charge_point_id))
        if pk is None:
            return
        if action == "ReserveNow":
            reservations.apply_answer(pk, request.get("reservationId"), outcome, response)
        else:
            maintenance.record_answer(pk, action, request, outcome, response, command.get("requested_by"), at)
