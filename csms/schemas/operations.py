"""Reservations, firmware updates, diagnostics and maintenance outcomes (SPEC "Network operations")."""

from datetime import UTC

from marshmallow import Schema, fields, validate

from csms.models.firmware import DIAGNOSTICS_STATUSES, FIRMWARE_STATUSES
from csms.models.reservations import ReservationState
from csms.schemas.common import ID, Money, page_of
from csms.services.command_queue import MAX_TTL_SECONDS

DEVICE = {"validate": validate.Length(min=1, max=48)}
ID_TAG = validate.Length(min=1, max=20)
STATES = [state.value for state in ReservationState]


def _aware(**kwargs) -> fields.AwareDateTime:
    """A time with an offset (a time without one is read as UTC)."""
    return fields.AwareDateTime(default_timezone=UTC, **kwargs)


# --- reservations ---------------------------------------------------------------------------------


class ReservationCreate(Schema):
    charge_point_id = fields.String(data_key="chargePointId", required=True, **DEVICE)
    connector_id = fields.Integer(
        data_key="connectorId",
        required=True,
        validate=validate.Range(min=0, max=32),
        metadata={"description": "0 reserves the charger as a whole (any connector)"},
    )
    expires_at = _aware(data_key="expiryDate", required=True)


class OperatorReservationCreate(ReservationCreate):
    id_tag = fields.String(data_key="idTag", required=True, validate=ID_TAG)
    parent_id_tag = fields.String(
        data_key="parentIdTag",
        validate=ID_TAG,
        metadata={"description": "the tag's group; default: the tag's own parent, if it has one"},
    )


class Reservation(Schema):
    id = fields.Integer(metadata={"description": "also the OCPP reservationId"})
    charge_point_id = fields.String(data_key="chargePointId", attribute="charge_point_code")
    connector_id = fields.Integer(data_key="connectorId")
    id_tag = fields.String(data_key="idTag")
    parent_id_tag = fields.String(data_key="parentIdTag", allow_none=True)
    user_id = fields.Integer(data_key="userId", allow_none=True)
    state = fields.String(metadata={"enum": STATES})
    expires_at = fields.DateTime(data_key="expiryDate")
    charger_status = fields.String(
        data_key="chargerStatus", allow_none=True, metadata={"description": "the answer to ReserveNow"}
    )
    reason = fields.String(allow_none=True)
    transaction_id = fields.Integer(data_key="transactionId", allow_none=True)
    fee = Money(attribute="fee_minor")
    currency = fields.String(allow_none=True)
    fee_outcome = fields.String(
        data_key="feeOutcome", allow_none=True, metadata={"enum": ["captured", "refunded"]}
    )
    created_at = fields.DateTime(data_key="createdAt")
    ended_at = fields.DateTime(data_key="endedAt", allow_none=True)


class ReservationArgs(Schema):
    charge_point_id = fields.String(data_key="chargePointId", **DEVICE)
    state = fields.String(validate=validate.OneOf(STATES))
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=1_000_000))
    per_page = fields.Integer(data_key="perPage", load_default=50, validate=validate.Range(min=1, max=500))


ReservationPage = page_of(Reservation, "ReservationPage")


# --- jobs: firmware and diagnostics ------------------------------------------------------------------


class Targets(Schema):
    charge_point_ids = fields.List(
        fields.String(**DEVICE),
        data_key="chargePointIds",
        load_default=list,
        validate=validate.Length(max=1000),
    )
    station_id = fields.Integer(data_key="stationId", validate=ID, metadata={"description": "its chargers"})
    retries = fields.Integer(validate=validate.Range(min=0, max=100))
    retry_interval = fields.Integer(data_key="retryInterval", validate=validate.Range(min=0, max=86_400))
    ttl_seconds = fields.Integer(
        data_key="ttlSeconds",
        load_default=MAX_TTL_SECONDS,
        validate=validate.Range(min=1, max=MAX_TTL_SECONDS),
        metadata={"description": "how long the call waits for an offline charger (seconds)"},
    )


class FirmwareUpdateCreate(Targets):
    location = fields.String(
        validate=[validate.Length(min=1, max=512), validate.URL(schemes={"http", "https", "ftp", "ftps"})],
        metadata={"description": "where the chargers fetch the firmware; or `fileId`"},
    )
    file_id = fields.Integer(
        data_key="fileId", validate=ID, metadata={"description": "a file uploaded to /api/cms/firmware-files"}
    )
    retrieve_date = _aware(data_key="retrieveDate", load_default=None, allow_none=True)


class Command(Schema):
    command_id = fields.String(data_key="commandId")
    state = fields.String()


class FirmwareTarget(Schema):
    charge_point_id = fields.String(data_key="chargePointId")
    status = fields.String(metadata={"enum": list(FIRMWARE_STATUSES)})
    error = fields.String(allow_none=True)
    status_at = fields.DateTime(data_key="statusAt")
    command_id = fields.String(data_key="commandId", allow_none=True)
    firmware_version = fields.String(
        data_key="firmwareVersion", allow_none=True, metadata={"description": "reported at its next boot"}
    )


class FirmwareUpdate(Schema):
    id = fields.Integer()
    location = fields.String()
    file_id = fields.Integer(data_key="fileId", allow_none=True)
    retrieve_date = fields.DateTime(data_key="retrieveDate")
    retries = fields.Integer(allow_none=True)
    retry_interval = fields.Integer(data_key="retryInterval", allow_none=True)
    created_at = fields.DateTime(data_key="createdAt")
    targets = fields.List(fields.Nested(FirmwareTarget))


FirmwareUpdatePage = page_of(FirmwareUpdate, "FirmwareUpdatePage")


class FirmwareFileUpload(Schema):
    file = fields.Raw(required=True, metadata={"type": "string", "format": "binary"})


class StoredFile(Schema):
    id = fields.Integer()
    filename = fields.String()
    content_type = fields.String(data_key="contentType")
    size_bytes = fields.Integer(data_key="sizeBytes")
    sha256 = fields.String()
    created_at = fields.DateTime(data_key="createdAt")


class FirmwareFile(StoredFile):
    url = fields.String(
        metadata={"description": "where chargers fetch it (give `fileId` to a firmware update)"}
    )


class DiagnosticsCreate(Targets):
    start_time = _aware(data_key="startTime")
    stop_time = _aware(data_key="stopTime")


class DiagnosticsTarget(Schema):
    charge_point_id = fields.String(data_key="chargePointId")
    status = fields.String(metadata={"enum": list(DIAGNOSTICS_STATUSES)})
    error = fields.String(allow_none=True)
    status_at = fields.DateTime(data_key="statusAt")
    command_id = fields.String(data_key="commandId", allow_none=True)
    file_name = fields.String(
        data_key="fileName", allow_none=True, metadata={"description": "as the charger named it"}
    )
    file = fields.Nested(StoredFile, allow_none=True, metadata={"description": "the upload, once it landed"})


class Diagnostics(Schema):
    id = fields.Integer()
    start_time = fields.DateTime(data_key="startTime", allow_none=True)
    stop_time = fields.DateTime(data_key="stopTime", allow_none=True)
    retries = fields.Integer(allow_none=True)
    retry_interval = fields.Integer(data_key="retryInterval", allow_none=True)
    created_at = fields.DateTime(data_key="createdAt")
    targets = fields.List(fields.Nested(DiagnosticsTarget))


DiagnosticsPage = page_of(Diagnostics, "DiagnosticsPage")


class Upload(Schema):
    file = fields.Nested(StoredFile)


# --- a charger's maintenance record -------------------------------------------------------------------


class Operation(Schema):
    action = fields.String()
    request = fields.Dict(allow_none=True)
    outcome = fields.String(metadata={"enum": ["answered", "call_error", "timeout", "offline", "invalid"]})
    status = fields.String(allow_none=True, metadata={"description": "the charger's answer"})
    requested_by = fields.Integer(data_key="requestedBy", allow_none=True)
    at = fields.DateTime()
