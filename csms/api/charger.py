"""Operators' remote commands: every CSMS-initiated OCPP 1.6 action, the charger's answer returned,
each call audited by the `commands` actor; for an offline charger, on request, the command queued
for its return (csms.services.command_queue)."""

from __future__ import annotations

from typing import Any

from flask import g, jsonify, make_response
from flask_smorest import Blueprint
from sqlalchemy import select

from csms.api.pagination import paginate
from csms.api.remote import call_charger, call_or_queue
from csms.api.security import requires
from csms.models import CommandAudit, QueuedCommand
from csms.schemas import commands as schemas
from csms.schemas.common import Error
from csms.services import command_queue

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
    return bp.alt_response(
        202, schema=schemas.QueuedCommand, description='the charger is offline: queued (`"offline": "queue"`)'
    )(view)


def _reply(body: dict, action: str, payload: dict) -> Any:
    """The charger's answer (200), or with `"offline": "queue"` and no node holding the charger, the
    command queued for its return (202)."""
    device_id = body["device_id"]
    if body.get("offline") != "queue":
        response = call_charger(device_id, action, payload, g.identity.user_id)
        return {"device_id": device_id, "action": action, "response": response}
    outcome = call_or_queue(device_id, action, payload, g.identity.user_id, body["ttl_seconds"])
    if isinstance(outcome, QueuedCommand):
        return make_response(jsonify(schemas.QueuedCommand().dump(outcome)), 202)
    return {"device_id": device_id, "action": action, "response": outcome}


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
    return _reply(body, "RemoteStartTransaction", payload)


@bp.post("/remote-stop")
@requires("operator")
@bp.arguments(schemas.RemoteStop)
@bp.response(200, schemas.ChargerReply)
@_documented
def remote_stop(body):
    """RemoteStopTransaction of a running transaction."""
    return _reply(body, "RemoteStopTransaction", {"transactionId": body["transaction_id"]})


@bp.post("/change-configuration")
@requires("operator")
@bp.arguments(schemas.ChangeConfiguration)
@bp.response(200, schemas.ChargerReply)
@_documented
def change_configuration(body):
    """ChangeConfiguration of one key."""
    return _reply(body, "ChangeConfiguration", {"key": body["key"], "value": body["value"]})


@bp.post("/reset")
@requires("operator")
@bp.arguments(schemas.Reset)
@bp.response(200, schemas.ChargerReply)
@_documented
def reset(body):
    """Reset, Soft (default) or Hard."""
    return _reply(body, "Reset", {"type": body["type"]})


@bp.post("/command")
@requires("operator")
@bp.arguments(schemas.Command)
@bp.response(200, schemas.ChargerReply)
@_documented
def command(body):
    """Any CSMS-initiated OCPP 1.6 action; the payload is checked against its schema before sending."""
    return _reply(body, body["action"], body["payload"])


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


@bp.get("/commands/<command_id>")
@requires("operator")
@bp.response(200, schemas.QueuedCommand)
@bp.alt_response(404, schema=Error, description="no such command")
def get_command(command_id):
    """A queued command (an operator's for an offline charger, or the CSMS's own): its state, the
    charger's answer or why it failed, and when each step happened."""
    return command_queue.get(command_id)


@bp.delete("/commands/<command_id>")
@requires("operator")
@bp.response(200, schemas.QueuedCommand)
@bp.alt_response(404, schema=Error, description="no such command")
@bp.alt_response(409, schema=Error, description="not queued any more (`command_not_queued`)")
def cancel_command(command_id):
    """Cancel a queued command: it never goes out. One already sent, finished or expired: 409."""
    return command_queue.cancel(command_id)
