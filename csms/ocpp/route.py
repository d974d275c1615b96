"""`ws://HOST:PORT/ocpp/<chargePointId>`: the handshake checks run before the upgrade, so a refused
charger gets a plain HTTP 401/404 and never a WebSocket."""

from __future__ import annotations

import contextlib
import socket

from flask import Blueprint, Flask, current_app, g, request

from csms.errors import error_response
from csms.extensions import sock
from csms.ocpp import websocket
from csms.ocpp.gateway import Gateway, HandshakeRefused
from csms.ocpp.session import OcppSession

SUBPROTOCOL = "ocpp1.6"
bp = Blueprint("ocpp", __name__)


@bp.before_request
def authenticate_charger():
    """Security profile 1 on the upgrade request: 401 for missing/wrong credentials, 404 for an
    unknown charger (unless auto-registration is on)."""
    charge_point_id = (request.view_args or {}).get("charge_point_id", "")
    gateway: Gateway = current_app.extensions["ocpp"]
    try:
        g.charger = gateway.authenticator.authenticate(charge_point_id, request.authorization)
    except HandshakeRefused as refused:
        response = error_response(refused.status, refused.code, refused.message)
        if refused.status == 401:
            response.headers["WWW-Authenticate"] = 'Basic realm="OCPP", charset="UTF-8"'
        return response
    return None


def _client_socket(environ: dict) -> socket.socket | None:
    """The TCP socket under this request, found where simple-websocket finds it."""
    if "werkzeug.socket" in environ:
        return environ["werkzeug.socket"]
    stream = environ.get("wsgi.input")
    stream = getattr(stream, "rfile", stream)
    raw = getattr(stream, "raw", None)
    return getattr(raw, "_sock", None)


def _end_transport(environ: dict, ws) -> None:
    """Shut the TCP connection down once the WebSocket is over, and close the connection's socket.

    simple-websocket works on a duplicate of the server's socket, so closing its copy leaves the
    connection open: the charger would wait for its close timeout after a 1002 or 1009, and the WSGI
    server would read the charger's next bytes as a new HTTP request. A shutdown ends it for both.
    With no reader thread (`websocket.NoReaderThread`) nothing else closes the copy.
    """
    websocket.end_transport(_client_socket(environ))
    with contextlib.suppress(OSError):
        ws.sock.close()


@sock.route("/ocpp/<string:charge_point_id>", bp=bp)
def charger_socket(ws, charge_point_id: str) -> None:
    """One charger's connection, for as long as it lasts."""
    try:
        if ws.subprotocol != SUBPROTOCOL:
            ws.close(reason=1002, message=f"subprotocol {SUBPROTOCOL} required")
            return
        gateway: Gateway = current_app.extensions["ocpp"]
        OcppSession(gateway, ws, g.charger, request.remote_addr).run()
    finally:
        _end_transport(request.environ, ws)


def init_app(app: Flask) -> None:
    app.config["SOCK_SERVER_OPTIONS"] = {
        "subprotocols": [SUBPROTOCOL],
        "ping_interval": None,  # csms.ocpp.websocket.Keepalive pings, not a reader per connection
        "thread_class": websocket.NoReaderThread,
        "max_message_size": app.config["MAX_FRAME_BYTES"],
    }
    app.extensions["ocpp"] = Gateway(app)
    app.register_blueprint(bp)
