from marshmallow import Schema, fields, validate

from csms.ocpp.validation import CSMS_ACTIONS
from csms.schemas.common import page_of
from csms.services.command_queue import DEFAULT_TTL_SECONDS, MAX_TTL_SECONDS

DEVICE = {"data_key": "deviceId", "required": True, "validate": validate.Length(min=1, max=48)}


class WhenOffline(Schema):
    """What to do when no node holds the charger: 409 (absent), or queue the command for its return."""

    offline = fields.String(
        validate=validate.OneOf(["queue"]),
        metadata={"description": '"queue": an offline charger gets the command when it is back (202)'},
    )
    ttl_seconds = fields.Integer(
        data_key="ttlSeconds",
        strict=True,
        load_default=DEFAULT_TTL_SECONDS,
        validate=validate.Range(min=1, max=MAX_TTL_SECONDS),
        metadata={"description": "how long a queued command may wait before it expires (seconds)"},
    )


class RemoteStart(WhenOffline):
    device_id = fields.String(**DEVICE)
    id_tag = fields.String(data_key="idTag", required=True, validate=validate.Length(min=1, max=20))
    connector_id = fields.Integer(data_key="connectorId", validate=validate.Range(min=1, max=32))


class RemoteStop(WhenOffline):
    device_id = fields.String(**DEVICE)
    transaction_id = fields.Integer(
        data_key="transactionId", required=True, validate=validate.Range(min=-(2**31), max=2**31 - 1)
    )


class ChangeConfiguration(WhenOffline):
    device_id = fields.String(**DEVICE)
    key = fields.String(required=True, validate=validate.Length(min=1, max=50))
    value = fields.String(required=True, validate=validate.Length(max=500))


class Reset(WhenOffline):
    device_id = fields.String(**DEVICE)
    type = fields.String(load_default="Soft", validate=validate.OneOf(["Soft", "Hard"]))


class Command(WhenOffline):
    device_id = fields.String(**DEVICE)
    action = fields.String(required=True, validate=validate.OneOf(sorted(CSMS_ACTIONS)))
    payload = fields.Dict(load_default=dict)


class ChargerReply(Schema):
    device_id = fields.String(data_key="deviceId")
    action = fields.String()
    response = fields.Dict()


class CommandError(Schema):
    code = fields.String()
    description = fields.String()


class QueuedCommand(Schema):
    """A command queued for an offline charger, or one of the CSMS's own, and what came of it."""

    command_id = fields.String(data_key="commandId")
    charge_point_id = fields.String(data_key="chargePointId")
    action = fields.String()
    payload = fields.Dict()
    state = fields.String(metadata={"enum": ["queued", "sent", "answered", "failed", "expired", "cancelled"]})
    response = fields.Dict(allow_none=True)
    error = fields.Nested(CommandError, allow_none=True, metadata={"description": "why it failed"})
    created_at = fields.DateTime(data_key="createdAt")
    expires_at = fields.DateTime(data_key="expiresAt")
    sent_at = fields.DateTime(data_key="sentAt", allow_none=True)
    answered_at = fields.DateTime(data_key="answeredAt", allow_none=True)
    cancelled_at = fields.DateTime(data_key="cancelledAt", allow_none=True)


class AuditArgs(Schema):
    charge_point_id = fields.String(data_key="chargePointId")
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=1_000_000))
    per_page = fields.Integer(data_key="perPage", load_default=50, validate=validate.Range(min=1, max=500))


class Audit(Schema):
    id = fields.Integer()
    charge_point_id = fields.String(data_key="chargePointId")
    action = fields.String()
    payload = fields.Dict(allow_none=True)
    requested_by = fields.Integer(data_key="requestedBy", allow_none=True)
    requested_at = fields.DateTime(data_key="requestedAt")
    outcome = fields.String()
    response = fields.Dict(allow_none=True)
    error_code = fields.String(data_key="errorCode", allow_none=True)
    error_description = fields.String(data_key="errorDescription", allow_none=True)
    latency_ms = fields.Integer(data_key="latencyMs", allow_none=True)


AuditPage = page_of(Audit, "AuditPage")
