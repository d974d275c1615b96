"""`ws://HOST:PORT/ocpp/<chargePointId>`: the handshake checks run before the upgrade, so a refused
charger gets a plain HTTP 401/404 and never a WebSocket.

A connection costs the web process one open file, its socket. Under gevent simple-websocket would
work on a duplicate of it (`sock.dup()`), two open files per charger; it takes a socket handed to it
under `gunicorn.socket` as it is, so the accepted charger's own socket goes there. The WebSocket and
gevent's HTTP handler then share that socket: once the WebSocket is over it is shut down (so the
handler reads no more requests from it) and the handler, its owner, closes it.
"""

from __future__ import annotations

import logging
import socket

from flask import Blueprint, Flask, current_app, g, request

from csms.errors import error_response
from csms.extensions import sock
from csms.ocpp import websocket
from csms.ocpp.gateway import Gateway, HandshakeRefused
from csms.ocpp.session import OcppSession

log = logging.getLogger(__name__)
SUBPROTOCOL = "ocpp1.6"
bp = Blueprint("ocpp", __name__)


@bp.before_request
def authenticate_charger():
    """The charger's security profile on the upgrade request (csms.ocpp.gateway): 401 for
    missing/wrong credentials, 403 for a profile-2 charger not over TLS, 404 for an unknown charger
    (unless auto-registration is on)."""
    charge_point_id = (request.view_args or {}).get("charge_point_id", "")
    gateway: Gateway = current_app.extensions["ocpp"]
    try:
        g.charger = gateway.authenticator.authenticate(
            charge_point_id, request.authorization, secure=request.scheme == "https"
        )
    except HandshakeRefused as refused:
        log.warning(
            "refused the connection of %r from %s: %s %s",
            charge_point_id[:48],
            request.remote_addr,
            refused.status,
            refused.message,
            extra={"chargePointId": charge_point_id[:48], "reason": refused.code},
        )
        response = error_response(refused.status, refused.code, refused.message)
        if refused.status == 401:
            response.headers["WWW-Authenticate"] = 'Basic realm="OCPP", charset="UTF-8"'
        return response
    _hand_over_socket(request.environ)
    return None


def _hand_over_socket(environ: dict) -> None:
    """Under gevent's server, give simple-websocket the connection's own socket (see the module's
    docstring); other servers (werkzeug's, in tests) give it theirs already."""
    if environ.get("SERVER_SOFTWARE", "").startswith("gevent"):
        sock = _client_socket(environ)
        if sock is not None:
            environ[_HANDED_OVER] = sock


# Where simple-websocket takes a socket without duplicating it (and flask-sock then ends the
# response as under gunicorn: by raising StopIteration, which `charger_socket` prevents).
_HANDED_OVER = "gunicorn.socket"


def _client_socket(environ: dict) -> socket.socket | None:
    """The TCP socket under this request, found where simple-websocket finds it."""
    if "werkzeug.socket" in environ:
        return environ["werkzeug.socket"]
    stream = environ.get("wsgi.input")
    stream = getattr(stream, "rfile", stream)
    raw = getattr(stream, "raw", None)
    return getattr(raw, "_sock", None)


def _end_transport(ws) -> None:
    """Shut the TCP connection down once the WebSocket is over; the server closes the socket.

    Without the shutdown the charger would wait for its close timeout after a 1002 or 1009, and the
    WSGI server, whose socket this is, would read the charger's next bytes as a new HTTP request. A
    shutdown ends it for both: the server's next read returns nothing, so it closes the socket, once,
    as for any finished connection (closed here as well, the server's next read would fail on it).
    """
    websocket.end_transport(ws.sock)


@sock.route("/ocpp/<string:charge_point_id>", bp=bp)
def charger_socket(ws, charge_point_id: str) -> None:
    """One charger's connection, for as long as it lasts."""
    if _HANDED_OVER in request.environ:
        # flask-sock picks how to end the response by this mode: as on gevent, with no body and no
        # status (the 101 has gone out), not by raising StopIteration as a gunicorn worker expects.
        ws.mode = "gevent"
    try:
        if ws.subprotocol != SUBPROTOCOL:
            ws.close(reason=1002, message=f"subprotocol {SUBPROTOCOL} required")
            return
        gateway: Gateway = current_app.extensions["ocpp"]
        OcppSession(gateway, ws, g.charger, request.remote_addr).run()
    finally:
        _end_transport(ws)


def init_app(app: Flask) -> None:
    app.config["SOCK_SERVER_OPTIONS"] = {
        "subprotocols": [SUBPROTOCOL],
        "ping_interval": None,  # csms.ocpp.websocket.Keepalive pings, not a reader per connection
        "thread_class": websocket.NoReaderThread,
        "max_message_size": app.config["MAX_FRAME_BYTES"],
    }
    app.extensions["ocpp"] = Gateway(app)
    app.register_blueprint(bp)
