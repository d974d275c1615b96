"""Firmware updates (OCPP 1.6 §4.5, §5.19): one job for many chargers, each charger's UpdateFirmware
queued for it (csms.services.command_queue: sent at once to a connected charger, on its return to an
offline one), its progress followed through FirmwareStatusNotification along
`csms.models.firmware.FIRMWARE_TRANSITIONS`, and the version it reports at its next boot."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from csms.extensions import db
from csms.models import FirmwareTarget, FirmwareUpdate
from csms.models.firmware import FIRMWARE_OPEN, FIRMWARE_TRANSITIONS
from csms.ocpp import validation
from csms.services import command_queue, files
from csms.services.errors import InvalidInput, NotFound
from csms.services.network_targets import resolve_targets, trigger


def create(
    *,
    charge_point_ids: list[str],
    station_id: int | None,
    location: str | None,
    file_id: int | None,
    retrieve_date: datetime,
    retries: int | None,
    retry_interval: int | None,
    ttl_seconds: int,
    requested_by: int | None,
    base_url: str,
) -> FirmwareUpdate:
    """Store the job and queue UpdateFirmware for each target charger; commits."""
    if (location is None) == (file_id is None):
        raise InvalidInput("give either a location or a fileId", code="invalid_location")
    stored = files.by_id("firmware", file_id) if file_id is not None else None
    if stored is not None:
        location = files.firmware_url(base_url, stored)
    payload: dict[str, Any] = {
        "location": location,
        "retrieveDate": retrieve_date.isoformat().replace("+00:00", "Z"),
    }
    if retries is not None:
        payload["retries"] = retries
    if retry_interval is not None:
        payload["retryInterval"] = retry_interval
    validation.validate_request("UpdateFirmware", payload)
    targets = resolve_targets(charge_point_ids, station_id)
    job = FirmwareUpdate(
        location=location,
        file_id=file_id,
        retrieve_date=retrieve_date,
        retries=retries,
        retry_interval=retry_interval,
        requested_by=requested_by,
    )
    for charge_point_id in targets:
        command = command_queue.enqueue(
            charge_point_id, "UpdateFirmware", payload, ttl_seconds=ttl_seconds, requested_by=requested_by
        )
        job.targets.append(FirmwareTarget(charge_point_id=charge_point_id, command_id=command.command_id))
    db.session.add(job)
    db.session.commit()
    return job


def get(update_id: int) -> FirmwareUpdate:
    job = db.session.get(FirmwareUpdate, update_id) if 0 < update_id < 2**31 else None
    if job is None:
        raise NotFound(f"no firmware update {update_id}", code="firmware_update_not_found")
    return job


def refresh(update_id: int, requested_by: int | None) -> FirmwareUpdate:
    """Ask every charger of the job whose update is still under way for its FirmwareStatusNotification
    (TriggerMessage, queued); commits."""
    job = get(update_id)
    under_way = [
        t.charge_point_id for t in job.targets if t.status in FIRMWARE_OPEN and t.status != "Pending"
    ]
    trigger(under_way, "FirmwareStatusNotification", requested_by)
    db.session.commit()
    return job


def apply_answer(command_id: str, outcome: str, at: datetime) -> None:
    """The answer to a target's UpdateFirmware: acknowledged (`Scheduled`), or never received
    (`Failed`: CALLERROR, timeout, disconnection). The caller commits."""
    entering = "Scheduled" if outcome == "answered" else "Failed"
    error = None if outcome == "answered" else f"UpdateFirmware {outcome}"
    db.session.execute(
        update(FirmwareTarget)
        .where(FirmwareTarget.command_id == command_id, FirmwareTarget.status == "Pending")
        .values(status=entering, error=error, status_at=at)
        .execution_options(synchronize_session=False)
    )


def apply_status(charge_point_id: str, status: str, at: datetime) -> bool:
    """A FirmwareStatusNotification moves the charger's current (latest open) target along the
    transition table; a status it has moved past, or Idle (§4.5: only sent when triggered and not
    busy), changes nothing. The caller commits."""
    leaving = [state for state, nexts in FIRMWARE_TRANSITIONS.items() if status in nexts]
    if not leaving:
        return False
    target_id = db.session.scalar(
        select(FirmwareTarget.id)
        .where(FirmwareTarget.charge_point_id == charge_point_id, FirmwareTarget.status.in_(FIRMWARE_OPEN))
        .order_by(FirmwareTarget.id.desc())
        .limit(1)
    )
    if target_id is None:
        return False
    error = f"the charger reported {status}" if status.endswith("Failed") else None
    moved = db.session.execute(
        update(FirmwareTarget)
        .where(FirmwareTarget.id == target_id, FirmwareTarget.status.in_(leaving))
        .values(status=status, status_at=at, error=error)
        .execution_options(synchronize_session=False)
    ).rowcount
    return bool(moved)


def apply_boot(charge_point_id: str, firmware_version: str | None) -> None:
    """The boot after an installation: the version the charger now runs goes on its finished
    target (the charger's own record gets it from the boot itself). The caller commits."""
    if not firmware_version:
        return
    db.session.execute(
        update(FirmwareTarget)
        .where(
            FirmwareTarget.charge_point_id == charge_point_id,
            FirmwareTarget.status == "Installed",
            FirmwareTarget.firmware_version.is_(None),
        )
        .values(firmware_version=firmware_version[:50])
        .execution_options(synchronize_session=False)
    )
