"""Running the network (SPEC "Network operations"): reservations for operators and customers,
firmware updates and diagnostics as jobs over many chargers, and the files chargers fetch or upload.

The views store the record, send the OCPP call through the usual path (the gateway, or the offline
queue) and answer; what the charger says later is recorded by the workers (csms.services.call_outcomes
and the status notifications)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from flask import Response, current_app, g, request
from flask_smorest import Blueprint
from sqlalchemy import select

from csms.api.pagination import paginate
from csms.api.remote import call_charger, call_or_queue
from csms.api.security import requires
from csms.extensions import db
from csms.models import ChargePoint, DiagnosticsRequest, FirmwareUpdate, IdTag, Reservation, StoredFile
from csms.pipeline import announce as cms_events
from csms.schemas import operations as schemas
from csms.schemas.common import Error, PageArgs
from csms.services import diagnostics, files, firmware, reservations
from csms.services.errors import Conflict, InvalidInput, ServiceError

log = logging.getLogger(__name__)

cms_bp = Blueprint(
    "operations", __name__, url_prefix="/api/cms", description="Reservations, firmware and diagnostics"
)
user_bp = Blueprint("reservations", __name__, url_prefix="/api/user", description="A customer's reservations")
files_bp = Blueprint(
    "files",
    __name__,
    url_prefix="/files",
    description="Files chargers fetch (firmware) and upload (diagnostics); the URL's token authenticates",
)


class FileTooLarge(ServiceError):
    status = 413
    code = "file_too_large"


def _base_url() -> str:
    """Where chargers reach this CSMS over HTTP: `CSMS_PUBLIC_URL`, else the address this request used."""
    return current_app.config["PUBLIC_URL"] or request.host_url


# --- reservations ---------------------------------------------------------------------------------


def _announce(kind: str, entity_type: str, entity_id: int, payload: dict) -> None:
    """`cms.<entity>.<kind>` for integrations and the operators' dashboards (SPEC "Events")."""
    cms_events.announce(kind, entity_type, entity_id, payload, g.identity.user_id)


def _reserve(reservation: Reservation) -> Reservation:
    """Send ReserveNow and record the answer (the `commands` actor records it too: the same
    conditional change, so whichever is first wins). Not sent, or refused: 409/504/502, rejected."""
    reservation_id, charge_point_id = reservation.id, reservation.charge_point_code
    payload = reservations.reserve_now_payload(reservation)
    try:
        answer = call_charger(charge_point_id, "ReserveNow", payload, g.identity.user_id)
    except ServiceError as exc:
        reservations.reject(reservation_id, exc.message)
        raise
    reservations.apply_answer(reservation.charge_point_id, reservation_id, "answered", answer)
    db.session.commit()
    state = db.session.get(Reservation, reservation_id).state
    _announce("created", "reservation", reservation_id, {"chargePointId": charge_point_id, "state": state})
    if answer.get("status") != "Accepted":
        raise Conflict(
            f"the charger answered {answer.get('status')}",
            code="charger_rejected",
            details={"reservationId": reservation_id, "chargerResponse": answer},
        )
    return db.session.get(Reservation, reservation_id)


def _cancel(reservation: Reservation, reason: str) -> Reservation:
    """Withdraw it, then tell the charger (CancelReservation; queued while it is offline, until the
    reservation would have expired). The charger's answer does not undo the cancellation."""
    reservations.cancel(reservation, reason)
    ttl = int((reservation.expires_at - datetime.now(UTC)).total_seconds())
    payload = {"reservationId": reservation.id}
    try:
        call_or_queue(
            reservation.charge_point_code, "CancelReservation", payload, g.identity.user_id, max(ttl, 1)
        )
    except ServiceError as exc:  # no answer: the charger drops the reservation at its expiry anyway
        log.warning(
            "CancelReservation %s at %s: %s", reservation.id, reservation.charge_point_code, exc.message
        )
    cancelled = db.session.get(Reservation, reservation.id)
    _announce(
        "updated",
        "reservation",
        cancelled.id,
        {"chargePointId": cancelled.charge_point_code, "state": cancelled.state},
    )
    return cancelled


RESERVATION_FAILURES = (
    (404, "unknown charger or connector"),
    (409, "connector reserved, insufficient funds, charger offline or refusing (`charger_rejected`)"),
    (422, "invalid expiry"),
    (502, "the charger answered with an error"),
    (504, "the charger did not answer"),
)


def _reservation_failures(view):
    for status, description in RESERVATION_FAILURES:
        view = cms_bp.alt_response(status, schema=Error, description=description)(view)
    return view


@cms_bp.post("/reservations")
@requires("operator")
@cms_bp.arguments(schemas.OperatorReservationCreate)
@cms_bp.response(201, schemas.Reservation)
@_reservation_failures
def create_reservation(body):
    """Reserve a connector (or the charger, connector 0) for an idTag until `expiryDate` (ReserveNow)."""
    reservation = reservations.create(
        body["charge_point_id"],
        body["connector_id"],
        body["id_tag"],
        body["expires_at"],
        requested_by=g.identity.user_id,
        parent_id_tag=body.get("parent_id_tag"),
    )
    return _reserve(reservation)


@cms_bp.get("/reservations")
@requires("operator")
@cms_bp.arguments(schemas.ReservationArgs, location="query")
@cms_bp.response(200, schemas.ReservationPage)
def list_reservations(args):
    """Reservations, newest first; by charger and state."""
    reservations.expire_due(db.session)
    db.session.commit()
    query = select(Reservation)
    if args.get("charge_point_id"):
        query = query.join(ChargePoint).where(ChargePoint.charge_point_id == args["charge_point_id"])
    if args.get("state"):
        query = query.where(Reservation.state == args["state"])
    return paginate(query, Reservation.id.desc(), args)


@cms_bp.get("/reservations/<int:reservation_id>")
@requires("operator")
@cms_bp.response(200, schemas.Reservation)
@cms_bp.alt_response(404, schema=Error)
def get_reservation(reservation_id: int):
    """One reservation."""
    return reservations.get(reservation_id)


@cms_bp.post("/reservations/<int:reservation_id>/cancel")
@requires("operator")
@cms_bp.response(200, schemas.Reservation)
@cms_bp.alt_response(404, schema=Error)
@cms_bp.alt_response(409, schema=Error, description="not open any more (`reservation_not_open`)")
def cancel_reservation(reservation_id: int):
    """Cancel an open reservation (CancelReservation; queued while the charger is offline); a
    customer's fee is refunded."""
    return _cancel(reservations.get(reservation_id), "cancelled by an operator")


@user_bp.post("/reservations")
@requires("customer")
@user_bp.arguments(schemas.ReservationCreate)
@user_bp.response(201, schemas.Reservation)
@user_bp.alt_response(404, schema=Error, description="unknown charger or connector")
@user_bp.alt_response(
    409, schema=Error, description="reserved, no usable idTag, insufficient funds, offline, refused"
)
@user_bp.alt_response(422, schema=Error, description="invalid expiry")
@user_bp.alt_response(504, schema=Error, description="the charger did not answer")
def create_user_reservation(body):
    """Reserve a connector for your own idTag until `expiryDate`; the tariff's reservation fee is held
    from your wallet and settled when the reservation ends (README: Reservations)."""
    id_tag = db.session.scalar(
        select(IdTag.id_tag).where(IdTag.user_id == g.identity.user_id, IdTag.status == "Accepted")
    )
    if id_tag is None:
        raise Conflict("this account has no usable idTag", code="no_id_tag")
    reservation = reservations.create(
        body["charge_point_id"],
        body["connector_id"],
        id_tag,
        body["expires_at"],
        user_id=g.identity.user_id,
    )
    return _reserve(reservation)


@user_bp.get("/reservations")
@requires("customer")
@user_bp.arguments(schemas.ReservationArgs, location="query")
@user_bp.response(200, schemas.ReservationPage)
def list_user_reservations(args):
    """Your reservations, newest first."""
    reservations.expire_due(db.session)
    db.session.commit()
    query = select(Reservation).where(Reservation.user_id == g.identity.user_id)
    if args.get("state"):
        query = query.where(Reservation.state == args["state"])
    return paginate(query, Reservation.id.desc(), args)


@user_bp.get("/reservations/<int:reservation_id>")
@requires("customer")
@user_bp.response(200, schemas.Reservation)
@user_bp.alt_response(404, schema=Error)
def get_user_reservation(reservation_id: int):
    """One of your reservations."""
    return reservations.get(reservation_id, user_id=g.identity.user_id)


@user_bp.post("/reservations/<int:reservation_id>/cancel")
@requires("customer")
@user_bp.response(200, schemas.Reservation)
@user_bp.alt_response(404, schema=Error)
@user_bp.alt_response(409, schema=Error, description="not open any more (`reservation_not_open`)")
def cancel_user_reservation(reservation_id: int):
    """Cancel your open reservation; its fee is refunded in full."""
    reservation = reservations.get(reservation_id, user_id=g.identity.user_id)
    return _cancel(reservation, "cancelled by the customer")


# --- firmware -------------------------------------------------------------------------------------


@cms_bp.post("/firmware-files")
@requires("operator")
@cms_bp.arguments(schemas.FirmwareFileUpload, location="files")
@cms_bp.response(201, schemas.FirmwareFile)
@cms_bp.alt_response(413, schema=Error, description="larger than CSMS_UPLOAD_MAX_BYTES")
@cms_bp.alt_response(422, schema=Error)
def upload_firmware_file(body):
    """Upload a firmware image (multipart `file`); chargers fetch it from the URL returned."""
    upload = body["file"]
    data = upload.read(current_app.config["UPLOAD_MAX_BYTES"] + 1)
    if len(data) > current_app.config["UPLOAD_MAX_BYTES"]:
        raise FileTooLarge(f"at most {current_app.config['UPLOAD_MAX_BYTES']} bytes", code="file_too_large")
    stored = files.store("firmware", upload.filename, upload.mimetype, data, g.identity.user_id)
    db.session.commit()
    return {
        "id": stored.id,
        "filename": stored.filename,
        "content_type": stored.content_type,
        "size_bytes": stored.size_bytes,
        "sha256": stored.sha256,
        "created_at": stored.created_at,
        "url": files.firmware_url(_base_url(), stored),
    }


@cms_bp.post("/firmware-updates")
@requires("operator")
@cms_bp.arguments(schemas.FirmwareUpdateCreate)
@cms_bp.response(201, schemas.FirmwareUpdate)
@cms_bp.alt_response(404, schema=Error, description="unknown charger, station or file")
@cms_bp.alt_response(422, schema=Error)
def create_firmware_update(body):
    """UpdateFirmware to the chargers named and/or a station's, from a URL or an uploaded file; each
    charger's call is queued (sent at once when it is connected) and its progress followed."""
    job = firmware.create(
        charge_point_ids=body["charge_point_ids"],
        station_id=body.get("station_id"),
        location=body.get("location"),
        file_id=body.get("file_id"),
        retrieve_date=body.get("retrieve_date") or datetime.now(UTC),
        retries=body.get("retries"),
        retry_interval=body.get("retry_interval"),
        ttl_seconds=body["ttl_seconds"],
        requested_by=g.identity.user_id,
        base_url=_base_url(),
    )
    _announce(
        "created", "firmware_update", job.id, {"chargePointIds": [t.charge_point_id for t in job.targets]}
    )
    return job


@cms_bp.get("/firmware-updates")
@requires("operator")
@cms_bp.arguments(PageArgs, location="query")
@cms_bp.response(200, schemas.FirmwareUpdatePage)
def list_firmware_updates(args):
    """Firmware updates, newest first, with each charger's status."""
    return paginate(select(FirmwareUpdate), FirmwareUpdate.id.desc(), args)


@cms_bp.get("/firmware-updates/<int:update_id>")
@requires("operator")
@cms_bp.response(200, schemas.FirmwareUpdate)
@cms_bp.alt_response(404, schema=Error)
def get_firmware_update(update_id: int):
    """One firmware update and each charger's status."""
    return firmware.get(update_id)


@cms_bp.post("/firmware-updates/<int:update_id>/refresh")
@requires("operator")
@cms_bp.response(202, schemas.FirmwareUpdate)
@cms_bp.alt_response(404, schema=Error)
def refresh_firmware_update(update_id: int):
    """Ask each charger whose update is under way for its status (TriggerMessage
    FirmwareStatusNotification, queued): the targets update as the notifications come in."""
    return firmware.refresh(update_id, g.identity.user_id)


# --- diagnostics ----------------------------------------------------------------------------------


@cms_bp.post("/diagnostics")
@requires("operator")
@cms_bp.arguments(schemas.DiagnosticsCreate)
@cms_bp.response(201, schemas.Diagnostics)
@cms_bp.alt_response(404, schema=Error, description="unknown charger or station")
@cms_bp.alt_response(422, schema=Error)
def create_diagnostics(body):
    """GetDiagnostics to the chargers named and/or a station's, each with its own upload location
    served by the CSMS; each charger's call is queued (sent at once when it is connected)."""
    job = diagnostics.create(
        charge_point_ids=body["charge_point_ids"],
        station_id=body.get("station_id"),
        start_time=body.get("start_time"),
        stop_time=body.get("stop_time"),
        retries=body.get("retries"),
        retry_interval=body.get("retry_interval"),
        ttl_seconds=body["ttl_seconds"],
        requested_by=g.identity.user_id,
        base_url=_base_url(),
    )
    _announce("created", "diagnostics", job.id, {"chargePointIds": [t.charge_point_id for t in job.targets]})
    return job


@cms_bp.get("/diagnostics")
@requires("operator")
@cms_bp.arguments(PageArgs, location="query")
@cms_bp.response(200, schemas.DiagnosticsPage)
def list_diagnostics(args):
    """Diagnostics requests, newest first, with each charger's status and file."""
    return paginate(select(DiagnosticsRequest), DiagnosticsRequest.id.desc(), args)


@cms_bp.get("/diagnostics/<int:request_id>")
@requires("operator")
@cms_bp.response(200, schemas.Diagnostics)
@cms_bp.alt_response(404, schema=Error)
def get_diagnostics(request_id: int):
    """One diagnostics request and each charger's status and file."""
    return diagnostics.get(request_id)


@cms_bp.post("/diagnostics/<int:request_id>/refresh")
@requires("operator")
@cms_bp.response(202, schemas.Diagnostics)
@cms_bp.alt_response(404, schema=Error)
def refresh_diagnostics(request_id: int):
    """Ask each charger still uploading for its status (TriggerMessage DiagnosticsStatusNotification,
    queued): the targets update as the notifications come in."""
    return diagnostics.refresh(request_id, g.identity.user_id)


BINARY = {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}


@cms_bp.get("/diagnostics/<int:request_id>/files/<string:charge_point_id>")
@requires("operator")
@cms_bp.doc(responses={"200": {"description": "the file the charger uploaded", **BINARY}})
@cms_bp.alt_response(404, schema=Error, description="no such request, or nothing uploaded yet")
def download_diagnostics(request_id: int, charge_point_id: str):
    """Download the diagnostics file a charger uploaded."""
    stored = diagnostics.target_file(request_id, charge_point_id)
    return _file_response(stored, attachment=True)


def _file_response(stored: StoredFile, *, attachment: bool) -> Response:
    response = Response(stored.data, mimetype="application/octet-stream")
    if attachment:
        response.headers["Content-Disposition"] = f'attachment; filename="{stored.filename}"'
    response.headers["X-Content-SHA256"] = stored.sha256
    return response


# --- what chargers fetch and upload (authenticated by the URL's token) -----------------------------


@files_bp.get("/firmware/<string:token>/<string:filename>")
@files_bp.doc(security=[], responses={"200": {"description": "the firmware image", **BINARY}})
@files_bp.alt_response(404, schema=Error)
def fetch_firmware(token: str, filename: str):
    """A firmware image, for the chargers of an update (the token in the URL is the key)."""
    stored = files.by_token("firmware", token)
    return _file_response(stored, attachment=False)


UPLOAD_BODY = {
    "requestBody": {
        "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}
            },
        }
    }
}


def _upload(token: str, filename: str | None):
    limit = current_app.config["UPLOAD_MAX_BYTES"]
    if request.mimetype == "multipart/form-data":
        upload = next(iter(request.files.values()), None)
        if upload is None:
            raise InvalidInput("the form has no file", code="empty_file")
        data, filename, content_type = upload.read(limit + 1), filename or upload.filename, upload.mimetype
    else:
        data, content_type = request.get_data(cache=False), request.mimetype
    if len(data) > limit:
        raise FileTooLarge(f"at most {limit} bytes", code="file_too_large")
    stored = diagnostics.receive_upload(token, filename, content_type, data)
    return {"file": stored}


def _upload_failures(view):
    for status, description in (
        (404, "unknown location"),
        (409, "the location was used already"),
        (413, "larger than CSMS_UPLOAD_MAX_BYTES"),
        (422, "empty"),
    ):
        view = files_bp.alt_response(status, schema=Error, description=description)(view)
    return view


@files_bp.put("/diagnostics/<string:token>/<string:filename>")
@files_bp.doc(security=[], **UPLOAD_BODY)
@files_bp.response(201, schemas.Upload)
@_upload_failures
def put_diagnostics(token: str, filename: str):
    """A charger's diagnostics upload by HTTP PUT to its location plus the file's name (one file per
    location)."""
    return _upload(token, filename)


@files_bp.post("/diagnostics/<string:token>/")
@files_bp.doc(security=[], **UPLOAD_BODY)
@files_bp.response(201, schemas.Upload)
@_upload_failures
def post_diagnostics(token: str):
    """A charger's diagnostics upload by HTTP POST to its location: a multipart form with one file,
    or the file as the body (one file per location)."""
    return _upload(token, None)
