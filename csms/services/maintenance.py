"""Availability and maintenance (OCPP 1.6 §5.2 ChangeAvailability, §5.4 ClearCache, §5.17
TriggerMessage, §5.18 UnlockConnector): what the charger answered, kept on its record.

The `commands` actor calls `record_answer` with every answered (or failed) CSMS-initiated call of
these actions, however it was sent (REST, the offline queue). ChangeAvailability also changes the
connectors it names (connector 0: all of them): `applied` when the charger Accepted, `scheduled`
when it answered Scheduled (a transaction is running there: §5.2, it changes once the transaction
ends), `rejected` otherwise. A scheduled change becomes `applied` at the StatusNotification that shows
it (Unavailable for Inoperative, anything else for Operative), whichever of the two the workers
apply first.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, update

from csms.extensions import db
from csms.models import ChargerOperation, Connector
from csms.services.sql import found_among, upsert

RECORDED = frozenset({"ChangeAvailability", "ClearCache", "TriggerMessage", "UnlockConnector"})


def record_answer(
    charge_point_pk: int,
    action: str,
    request: dict[str, Any],
    outcome: str,
    response: dict[str, Any] | None,
    requested_by: int | None,
    at: datetime,
) -> None:
    """Keep the latest call of `action` to the charger (a later one is never overwritten by an
    earlier one delivered late) and apply what it changes. The caller commits."""
    status = (response or {}).get("status") if outcome == "answered" else None
    row = {
        "charge_point_id": charge_point_pk,
        "action": action,
        "request": request,
        "outcome": outcome[:16],
        "status": status,
        "requested_by": requested_by,
        "at": at,
    }
    upsert(
        db.session,
        ChargerOperation,
        [row],
        ["charge_point_id", "action"],
        only_if=lambda table, excluded: table.c.at < excluded.at,
    )
    if action == "ChangeAvailability" and status is not None:
        _change_availability(charge_point_pk, request, status, at)


_STATE_OF_ANSWER = {"Accepted": "applied", "Scheduled": "scheduled", "Rejected": "rejected"}


def _shows(kind: str, status: str) -> bool:
    """Whether a connector status shows the availability `kind` in effect."""
    return (status == "Unavailable") == (kind == "Inoperative")


def _change_availability(charge_point_pk: int, request: dict[str, Any], status: str, at: datetime) -> None:
    kind = request["type"]
    connectors = [Connector.charge_point_id == charge_point_pk]
    if request["connectorId"] != 0:
        connectors.append(Connector.connector_id == request["connectorId"])
    newer = or_(Connector.availability_at.is_(None), Connector.availability_at < at)
    db.session.execute(
        update(Connector)
        .where(*connectors, newer)
        .values(
            availability=kind, availability_state=_STATE_OF_ANSWER.get(status, "rejected"), availability_at=at
        )
        .execution_options(synchronize_session=False)
    )
    if status == "Scheduled":  # the StatusNotification that ends it may have been applied already
        for connector in db.session.scalars(select(Connector).where(*connectors)):
            if (
                connector.availability_state == "scheduled"
                and connector.status_at is not None
                and connector.status_at > at
                and _shows(kind, connector.status)
            ):
                connector.availability_state = "applied"


def with_scheduled_changes(charge_point_pks: Iterable[int]) -> set[int]:
    """Which of these chargers have a connector with an availability change scheduled: a batch of
    StatusNotifications asks once, and `apply_status` runs only for those."""
    return found_among(
        db.session, Connector.charge_point_id, charge_point_pks, Connector.availability_state == "scheduled"
    )


def apply_status(charge_point_pk: int, connector_id: int, status: str) -> None:
    """A connector's StatusNotification: a scheduled availability change it shows is now applied."""
    db.session.execute(
        update(Connector)
        .where(
            Connector.charge_point_id == charge_point_pk,
            Connector.connector_id == connector_id,
            Connector.availability_state == "scheduled",
            Connector.availability == ("Inoperative" if status == "Unavailable" else "Operative"),
        )
        .values(availability_state="applied")
        .execution_options(synchronize_session=False)
    )


def operations(charge_point_pk: int) -> list[ChargerOperation]:
    return list(
        db.session.scalars(
            select(ChargerOperation)
            .where(ChargerOperation.charge_point_id == charge_point_pk)
            .order_by(ChargerOperation.action)
        )
    )
