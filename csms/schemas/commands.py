from marshmallow import Schema, fields, validate

from csms.ocpp.validation import CSMS_ACTIONS
from csms.schemas.common import page_of

DEVICE = {"data_key": "deviceId", "required": True, "validate": validate.Length(min=1, max=48)}


class RemoteStart(Schema):
    device_id = fields.String(**DEVICE)
    id_tag = fields.String(data_key="idTag", required=True, validate=validate.Length(min=1, max=20))
    connector_id = fields.Integer(data_key="connectorId", validate=validate.Range(min=1, max=32))


class RemoteStop(Schema):
    device_id = fields.String(**DEVICE)
    transaction_id = fields.Integer(
        data_key="transactionId", required=True, validate=validate.Range(min=-(2**31), max=2**31 - 1)
    )


class ChangeConfiguration(Schema):
    device_id = fields.String(**DEVICE)
    key = fields.String(required=True, validate=validate.Length(min=1, max=50))
    value = fields.String(required=True, validate=validate.Length(max=500))


class Reset(Schema):
    device_id = fields.String(**DEVICE)
    type = fields.String(load_default="Soft", validate=validate.OneOf(["Soft", "Hard"]))


class Command(Schema):
    device_id = fields.String(**DEVICE)
    action = fields.String(required=True, validate=validate.OneOf(sorted(CSMS_ACTIONS)))
    payload = fields.Dict(load_default=dict)


class ChargerReply(Schema):
    device_id = fields.String(data_key="deviceId")
    action = fields.String()
    response = fields.Dict()


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
