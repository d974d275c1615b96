"""Diagnostics (OCPP 1.6 §4.4, §5.9): GetDiagnostics queued for each target charger with an upload
location the CSMS serves itself, one per target; the file the charger uploads there is kept for
operators; the target's progress follows DiagnosticsStatusNotification along
`csms.models.firmware.DIAGNOSTICS_TRANSITIONS`.

The upload location is `<base>/files/diagnostics/<token>/`: the token is the target's secret (chargers
cannot present a bearer token), it accepts one file only, and the file's size is limited
(`CSMS_DIAGNOSTICS_MAX_BYTES`). OCPP 1.6 lets a charger upload by FTP too; the CSMS serves HTTP(S)
only: PUT to the location plus a file name, or POST (a raw body, or a multipart form with one file).
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from csms.extensions import db
from csms.models import DiagnosticsRequest, DiagnosticsTarget, StoredFile
from csms.models.firmware import DIAGNOSTICS_OPEN, DIAGNOSTICS_TRANSITIONS
from csms.ocpp import validation
from csms.services import command_queue, files
from csms.services.errors import Conflict, NotFound
from csms.services.network_targets import resolve_targets, trigger


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def create(
    *,
    charge_point_ids: list[str],
    station_id: int | None,
    start_time: datetime | None,
    stop_time: datetime | None,
    retries: int | None,
    retry_interval: int | None,
    ttl_seconds: int,
    requested_by: int | None,
    base_url: str,
) -> DiagnosticsRequest:
    """Store the job and queue GetDiagnostics for each target, each with its own upload location;
    commits."""
    targets = resolve_targets(charge_point_ids, station_id)
    job = DiagnosticsRequest(
        start_time=start_time,
        stop_time=stop_time,
        retries=retries,
        retry_interval=retry_interval,
        requested_by=requested_by,
    )
    for charge_point_id in targets:
        token = secrets.token_urlsafe(32)
        payload: dict[str, Any] = {"location": files.diagnostics_location(base_url, token)}
        for key, value in (
            ("startTime", start_time and _iso(start_time)),
            ("stopTime", stop_time and _iso(stop_time)),
            ("retries", retries),
            ("retryInterval", retry_interval),
        ):
            if value is not None:
                payload[key] = value
        validation.validate_request("GetDiagnostics", payload)
        command = command_queue.enqueue(
            charge_point_id, "GetDiagnostics", payload, ttl_seconds=ttl_seconds, requested_by=requested_by
        )
        job.targets.append(
            DiagnosticsTarget(
                charge_point_id=charge_point_id, command_id=command.command_id, upload_token=token
            )
        )
    db.session.add(job)
    db.session.commit()
    return job


def get(request_id: int) -> DiagnosticsRequest:
    job = db.session.get(DiagnosticsRequest, request_id) if 0 < request_id < 2**31 else None
    if job is None:
        raise NotFound(f"no diagnostics request {request_id}", code="diagnostics_not_found")
    return job


def refresh(request_id: int, requested_by: int | None) -> DiagnosticsRequest:
    """Ask every charger of the job still uploading for its DiagnosticsStatusNotification
    (TriggerMessage, queued); commits."""
    job = get(request_id)
    under_way = [
        t.charge_point_id for t in job.targets if t.status in DIAGNOSTICS_OPEN and t.status != "Pending"
    ]
    trigger(under_way, "DiagnosticsStatusNotification", requested_by)
    db.session.commit()
    return job


def apply_answer(command_id: str, outcome: str, response: dict[str, Any] | None, at: datetime) -> None:
    """The answer to a target's GetDiagnostics: the file name it will upload (`Accepted`), none
    (`NoFile`: nothing to upload), or no answer (`Failed`). The caller commits."""
    file_name = (response or {}).get("fileName") if outcome == "answered" else None
    if outcome != "answered":
        values = {"status": "Failed", "error": f"GetDiagnostics {outcome}"}
    elif file_name:
        values = {"status": "Accepted", "file_name": file_name[:255]}
    else:
        values = {"status": "NoFile"}
    db.session.execute(
        update(DiagnosticsTarget)
        .where(DiagnosticsTarget.command_id == command_id, DiagnosticsTarget.status == "Pending")
        .values(status_at=at, **values)
        .execution_options(synchronize_session=False)
    )
    if file_name:  # a notification may have moved it on first: keep the name all the same
        db.session.execute(
            update(DiagnosticsTarget)
            .where(DiagnosticsTarget.command_id == command_id, DiagnosticsTarget.file_name.is_(None))
            .values(file_name=file_name[:255])
            .execution_options(synchronize_session=False)
        )


def apply_status(charge_point_id: str, status: str, at: datetime) -> bool:
    """A DiagnosticsStatusNotification moves the charger's latest open target along the table; Idle
    (§4.4: only when triggered and not uploading) and a status it moved past change nothing."""
    leaving = [state for state, nexts in DIAGNOSTICS_TRANSITIONS.items() if status in nexts]
    if not leaving:
        return False
    target_id = db.session.scalar(
        select(DiagnosticsTarget.id)
        .where(
            DiagnosticsTarget.charge_point_id == charge_point_id,
            DiagnosticsTarget.status.in_(DIAGNOSTICS_OPEN),
        )
        .order_by(DiagnosticsTarget.id.desc())
        .limit(1)
    )
    if target_id is None:
        return False
    error = "the charger reported UploadFailed" if status == "UploadFailed" else None
    return bool(
        db.session.execute(
            update(DiagnosticsTarget)
            .where(DiagnosticsTarget.id == target_id, DiagnosticsTarget.status.in_(leaving))
            .values(status=status, status_at=at, error=error)
            .execution_options(synchronize_session=False)
        ).rowcount
    )


def receive_upload(token: str, filename: str | None, content_type: str | None, data: bytes) -> StoredFile:
    """Keep the file a charger uploaded to its target's location: once (409 `upload_used` after);
    an unknown token is 404. Commits."""
    target = db.session.scalar(select(DiagnosticsTarget).where(DiagnosticsTarget.upload_token == token))
    if target is None:
        raise NotFound("no such upload location", code="upload_not_found")
    if target.file_id is not None:
        raise Conflict("this upload location was used already", code="upload_used")
    stored = files.store("diagnostics", filename or target.file_name or "", content_type, data, None)
    taken = db.session.execute(
        update(DiagnosticsTarget)
        .where(DiagnosticsTarget.id == target.id, DiagnosticsTarget.file_id.is_(None))
        .values(file_id=stored.id)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not taken:  # a concurrent upload to the same location won
        db.session.rollback()
        raise Conflict("this upload location was used already", code="upload_used")
    db.session.commit()
    return stored


def target_file(request_id: int, charge_point_id: str) -> StoredFile:
    get(request_id)
    target = db.session.scalar(
        select(DiagnosticsTarget).where(
            DiagnosticsTarget.request_id == request_id, DiagnosticsTarget.charge_point_id == charge_point_id
        )
    )
    if target is None or target.file_id is None:
        raise NotFound("no file was uploaded for this charger", code="file_not_found")
    return db.session.get(StoredFile, target.file_id)
