"""Operators' remote commands: every CSMS-initiated OCPP 1.6 action, the charger's answer returned,
each call audited by the `commands` actor."""

from __future__ import annotations

from flask import g
from flask_smorest import Blueprint
from sqlalchemy import select

from csms.api.pagination import paginate
from csms.api.remote import call_charger
from csms.api.security import requires
from csms.models import CommandAudit
from csms.schemas import commands as schemas
from csms.schemas.common import Error

bp = Blueprint("charger", __name__, url_prefix="/api/charger", description="Remote commands to chargers")

FAILURES = (
    (404, "unknown charger"),
    (409, "charger offline"),
    (422, "invalid payload"),
    (502, "the charger answered with an error"),
    (504, "the charger did not answer"),
)


def _documented(view):
    for status, description in FAILURES:
        view = bp.alt_response(status, schema=Error, description=description)(view)
    return view


def _reply(device_id: str, action: str, payload: dict) -> dict:
    response = call_charger(device_id, action, payload, g.identity.user_id)
    return {"device_id": device_id, "action": action, "response": response}


@bp.post("/remote-start")
@requires("operator")
@bp.arguments(schemas.RemoteStart)
@bp.response(200, schemas.ChargerReply)
@_documented
def remote_start(body):
    """RemoteStartTransaction for an idTag, optionally on one connector."""
    payload = {"idTag": body["id_tag"]}
    if "connector_id" in body:
        payload["connectorId"] = body["connector_id"]
    return _reply(body["device_id"], "RemoteStartTransaction", payload)


@bp.post("/remote-stop")
@requires("operator")
@bp.arguments(schemas.RemoteStop)
@bp.response(200, schemas.ChargerReply)
@_documented
def remote_stop(body):
    """RemoteStopTransaction of a running transaction."""
    return _reply(body["device_id"], "RemoteStopTransaction", {"transactionId": body["transaction_id"]})


@bp.post("/change-configuration")
@requires("operator")
@bp.arguments(schemas.ChangeConfiguration)
@bp.response(200, schemas.ChargerReply)
@_documented
def change_configuration(body):
    """ChangeConfiguration of one key."""
    return _reply(body["device_id"], "ChangeConfiguration", {"key": body["key"], "value": body["value"]})


@bp.post("/reset")
@requires("operator")
@bp.arguments(schemas.Reset)
@bp.response(200, schemas.ChargerReply)
@_documented
def reset(body):
    """Reset, Soft (default) or Hard."""
    return _reply(body["device_id"], "Reset", {"type": body["type"]})


@bp.post("/command")
@requires("operator")
@bp.arguments(schemas.Command)
@bp.response(200, schemas.ChargerReply)
@_documented
def command(body):
    """Any CSMS-initiated OCPP 1.6 action; the payload is checked against its schema before sending."""
    return _reply(body["device_id"], body["action"], body["payload"])


@bp.get("/commands")
@requires("operator")
@bp.arguments(schemas.AuditArgs, location="query")
@bp.response(200, schemas.AuditPage)
def list_commands(args):
    """The audit of CSMS-initiated calls, newest first: who asked, what, the answer, the latency."""
    query = select(CommandAudit)
    if args.get("charge_point_id"):
        query = query.where(CommandAudit.charge_point_id == args["charge_point_id"])
    return paginate(query, CommandAudit.id.desc(), args)
