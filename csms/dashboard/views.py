"""The dashboard's pages: sign-in, the overview, and the fragments its live parts refresh."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_wtf.csrf import CSRFError

from csms.api.auth import authenticate
from csms.dashboard import csrf, signin
from csms.models import Role
from csms.pipeline import outbox
from csms.services import overview as network
from csms.services import tokens
from csms.services.errors import ServiceError

bp = Blueprint(
    "dashboard",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/dashboard/static",
)


@bp.before_request
def protect_forms():
    """Every state-changing request of the dashboard carries the session's CSRF token."""
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        csrf.protect()


@bp.errorhandler(CSRFError)
def csrf_refused(error: CSRFError):
    return render_template("dashboard/error.html", title="Form expired", message=error.description), 400


@bp.errorhandler(403)
def forbidden(error):
    message = "The dashboard is for operators. Customers use the app."
    return render_template("dashboard/error.html", title="Operators only", message=message), 403


@bp.get("/login")
def login():
    """The sign-in form."""
    return render_template("dashboard/login.html", next=_safe_next(request.args.get("next")))


@bp.post("/login")
def login_submit():
    """Check the credentials (through the same limiter as the REST login) and open a session."""
    email = request.form.get("email", "")
    try:
        user = authenticate(email, request.form.get("password", ""))
    except ServiceError as exc:
        flash(exc.message, "error")
        return render_template(
            "dashboard/login.html", next=_safe_next(request.form.get("next")), email=email
        ), (exc.status)
    if user.role != Role.OPERATOR:
        return forbidden(None)
    signin.sign_in(user)
    return redirect(_safe_next(request.form.get("next")) or url_for("dashboard.overview"))


@bp.post("/logout")
def logout():
    """End the session."""
    signin.sign_out()
    return redirect(url_for("dashboard.login"))


@bp.get("/")
@signin.operator_required
def overview():
    """The network at a glance, with a live grid of every connector."""
    return render_template(
        "dashboard/overview.html",
        summary=_summary(),
        alerts=_alerts(),
        connectors=network.connectors(),
        online=current_app.extensions["ocpp"].registry.ids(),
        token=_socket_token(),
        node=current_app.config["NODE_ID"],
    )


@bp.get("/dashboard/summary")
@signin.operator_required
def summary_fragment():
    """The overview's figures and alerts, refreshed by the page every few seconds."""
    return render_template("dashboard/_summary.html", summary=_summary(), alerts=_alerts())


def _summary() -> network.Summary:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return network.summary(current_app.extensions["ocpp"].registry.ids(), today)


def _alerts() -> dict:
    now = datetime.now(UTC)
    connected = current_app.extensions["ocpp"].registry.ids()
    minutes = current_app.config["OFFLINE_ALERT_MINUTES"]
    return {
        "faulted": network.faulted_connectors(),
        "offline": network.offline_for(connected, minutes, now),
        "offline_minutes": minutes,
        "outbox": outbox.backlog(),
    }


def _socket_token() -> str:
    """A bearer token for this page's Socket.IO connection, as short-lived as the session."""
    ttl = timedelta(seconds=current_app.config["DASHBOARD_SESSION_SECONDS"])
    identity = tokens.Identity(g.operator.id, g.operator.role)
    return tokens.issue(identity, current_app.config["SECRET_KEY"], ttl)


def _safe_next(target: str | None) -> str | None:
    """Only a path on this site: never an open redirect to another host."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target
