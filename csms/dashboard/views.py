"""The dashboard's pages: sign-in, the overview, and the fragments its live parts refresh."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_wtf.csrf import CSRFError

from csms.api.auth import authenticate
from csms.api.remote import call_charger
from csms.cluster import presence
from csms.dashboard import csrf, forms, signin
from csms.dashboard import records as record_pages
from csms.extensions import db
from csms.models import Role
from csms.pipeline import dead_letters, outbox
from csms.schemas.common import INT32_MAX
from csms.services import analytics, charging_profiles, customers, fleet, history, site_load, tokens
from csms.services import overview as network
from csms.services.errors import ServiceError
from csms.services.money import format_minor

# OCPP 1.6 ChargePointStatus values, for the list's filter.
CONNECTOR_STATUSES = (
    "Available",
    "Preparing",
    "Charging",
    "SuspendedEVSE",
    "SuspendedEV",
    "Finishing",
    "Reserved",
    "Unavailable",
    "Faulted",
)

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


@bp.errorhandler(404)
def not_found(error):
    message = "There is no such page or charger."
    return render_template("dashboard/error.html", title="Not found", message=message), 404


@bp.errorhandler(403)
def forbidden(error):
    message = "The dashboard is for operators. Customers use the app."
    return render_template("dashboard/error.html", title="Operators only", message=message), 403


@bp.get("/favicon.ico")
def favicon():
    """Browsers ask for it on every page that names no icon (the API docs)."""
    return redirect(url_for("dashboard.static", filename="favicon.svg"), code=301)


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
    connectors = network.connectors()
    return render_template(
        "dashboard/overview.html",
        summary=_summary(),
        alerts=_alerts(),
        connectors=connectors,
        online=_connected({c.charge_point_id for c in connectors}),
        token=_socket_token(),
        node=current_app.config["NODE_ID"],
    )


@bp.get("/dashboard/summary")
@signin.operator_required
def summary_fragment():
    """The overview's figures and alerts, refreshed by the page every few seconds."""
    return render_template("dashboard/_summary.html", summary=_summary(), alerts=_alerts())


@bp.get("/chargers")
@signin.operator_required
def chargers():
    """Every charger, searchable and filtered by connection, registration and connector status."""
    args = request.args
    page = fleet.search(
        q=args.get("q", "").strip()[:100],
        connection=args.get("connection", ""),
        registration=args.get("registration", ""),
        status=args.get("status", ""),
        page=_positive_int(args.get("page"), 1),
        per_page=50,
    )
    return render_template(
        "dashboard/chargers.html",
        page=page,
        args=args,
        online=_connected({point.charge_point_id for point in page.items}),
        statuses=CONNECTOR_STATUSES,
        registrations=fleet.REGISTRATION_FILTERS,
    )


@bp.get("/chargers/<charge_point_id>")
@signin.operator_required
def charger(charge_point_id: str):
    """One charger: connectors, running transactions with a live chart, commands, configuration,
    its message log, transactions and command audit."""
    point = _point_or_404(charge_point_id)
    return render_template(
        "dashboard/charger.html",
        point=point,
        connection=presence.where(db.session, charge_point_id),
        **_running(point),
        transactions=fleet.recent_transactions(point),
        messages=fleet.recent_messages(charge_point_id),
        commands=fleet.recent_commands(charge_point_id),
        actions=forms.ACTIONS,
        security_profiles=record_pages.SECURITY_PROFILES,
        token=_socket_token(),
        **_smart_charging(point),
    )


@bp.get("/chargers/<charge_point_id>/smart-charging")
@signin.operator_required
def charger_smart_charging(charge_point_id: str):
    """The charger's charging profiles and its share of its site, refreshed by its page."""
    point = _point_or_404(charge_point_id)
    return render_template("dashboard/_smart_charging.html", point=point, **_smart_charging(point))


def _smart_charging(point) -> dict:
    site, allocations = site_load.of_charger(point.id)
    return {
        "profiles": charging_profiles.of_charger(point.id),
        "first_limit": charging_profiles.first_limit,
        "site": site,
        "allocations": allocations,
    }


@bp.get("/chargers/<charge_point_id>/running")
@signin.operator_required
def charger_running(charge_point_id: str):
    """The running transaction and its chart, re-rendered when one starts or stops."""
    return render_template("dashboard/_running.html", **_running(_point_or_404(charge_point_id)))


def _running(point) -> dict:
    running = fleet.running_transactions(point)
    return {"running": running, "chart": fleet.chart_samples(running[0].id) if running else []}


def _point_or_404(charge_point_id: str):
    point = fleet.by_id(charge_point_id)
    if point is None:
        abort(404)
    return point


@bp.get("/chargers/<charge_point_id>/activity")
@signin.operator_required
def charger_activity(charge_point_id: str):
    """The charger's message log and command audit, refreshed by its page."""
    return render_template(
        "dashboard/_activity.html",
        messages=fleet.recent_messages(charge_point_id),
        commands=fleet.recent_commands(charge_point_id),
    )


@bp.get("/chargers/<charge_point_id>/command-form")
@signin.operator_required
def command_form(charge_point_id: str):
    """The inputs of one action's form, built from its OCPP schema."""
    action = request.args.get("action", "")
    if action not in forms.ACTIONS:
        abort(404)
    return render_template(
        "dashboard/_command_form.html",
        charge_point_id=charge_point_id,
        action=action,
        fields=forms.fields_for(action),
    )


@bp.post("/chargers/<charge_point_id>/commands")
@signin.operator_required
def send_command(charge_point_id: str):
    """Send an action to the charger, as `POST /api/charger/command` does, and show its reply."""
    action = request.form.get("action", "")
    try:
        payload = forms.payload_from(action, request.form)
        response = call_charger(charge_point_id, action, payload, g.operator.id)
    except ServiceError as exc:
        return render_template("dashboard/_reply.html", action=action, error=exc), 200
    template = "dashboard/_configuration.html" if action == "GetConfiguration" else "dashboard/_reply.html"
    return render_template(template, action=action, response=response, charge_point_id=charge_point_id)


@bp.get("/transactions")
@signin.operator_required
def transactions():
    """Transactions, live while running, filtered by charger, idTag, customer, state and dates;
    `?format=csv` exports every match."""
    filters = _history_filters()
    if request.args.get("format") == "csv":
        return _csv_export(filters)
    page = _positive_int(request.args.get("page"), 1)
    rows, total = history.search(filters, page=page)
    return render_template(
        "dashboard/transactions.html",
        rows=rows,
        total=total,
        page=page,
        pages=max(1, -(-total // 50)),
        args=request.args,
        token=_socket_token(),
    )


@bp.get("/transactions/<int:transaction_id>")
@signin.operator_required
def transaction(transaction_id: int):
    """One transaction: its figures and every meter sample, charted."""
    found = history.one(transaction_id) if 0 < transaction_id <= INT32_MAX else None
    if found is None:
        abort(404)
    samples = history.samples(transaction_id)
    chart = [(s.sampled_at.isoformat(), s.measurand, float(s.value)) for s in samples if not s.phase]
    return render_template("dashboard/transaction.html", row=found, samples=samples, chart=chart)


def _history_filters() -> history.Filters:
    args = request.args
    since = _date_arg("from", None)
    until = _date_arg("to", None)
    return history.Filters(
        charge_point_id=args.get("chargePointId", "").strip()[:48],
        id_tag=args.get("idTag", "").strip()[:20],
        customer=args.get("customer", "").strip()[:254],
        state=args.get("state", ""),
        since=datetime.combine(since, datetime.min.time(), UTC) if since else None,
        until=datetime.combine(until, datetime.min.time(), UTC) + timedelta(days=1) if until else None,
    )


CSV_COLUMNS = (
    "transactionId",
    "chargePointId",
    "connectorId",
    "idTag",
    "customer",
    "state",
    "startedAt",
    "stoppedAt",
    "meterStartWh",
    "meterStopWh",
    "energyWh",
    "cost",
    "currency",
    "stopReason",
)


def _csv_export(filters: history.Filters) -> Response:
    """Every matching transaction as CSV, streamed row by row (energy in Wh, times UTC ISO 8601)."""

    def lines():
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_COLUMNS)
        for row in history.export(filters):
            tx = row.transaction
            writer.writerow(
                (
                    tx.id,
                    row.charge_point_id,
                    tx.connector_id,
                    tx.id_tag,
                    row.customer or "",
                    tx.state,
                    tx.started_at.isoformat(),
                    tx.stopped_at.isoformat() if tx.stopped_at else "",
                    tx.meter_start_wh,
                    "" if tx.meter_stop_wh is None else tx.meter_stop_wh,
                    row.energy_wh,
                    "" if row.cost_minor is None else format_minor(row.cost_minor),
                    row.currency or "",
                    tx.stop_reason or "",
                )
            )
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
        yield buffer.getvalue()

    name = f"transactions-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.csv"
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    return Response(stream_with_context(lines()), mimetype="text/csv", headers=headers)


@bp.get("/customers")
@signin.operator_required
def customers_page():
    """Customers, searched by email or idTag, with their balance."""
    page = _positive_int(request.args.get("page"), 1)
    q = request.args.get("q", "").strip()[:254]
    rows, total = customers.search(q, page=page)
    return render_template(
        "dashboard/customers.html", rows=rows, total=total, page=page, pages=max(1, -(-total // 50)), q=q
    )


@bp.get("/customers/<int:user_id>")
@signin.operator_required
def customer_page(user_id: int):
    """One customer: wallet, ledger, id tags and sessions."""
    found = customers.account(user_id) if 0 < user_id <= INT32_MAX else None
    if found is None or found.user.role != Role.CUSTOMER:
        abort(404)
    return render_template("dashboard/customer.html", account=found)


@bp.get("/analytics")
@signin.operator_required
def analytics_page():
    """Energy, revenue, sessions and utilization per day, station or charger over a chosen range."""
    now = datetime.now(UTC)
    today = now.date()
    first = _date_arg("from", today - timedelta(days=29))
    last = _date_arg("to", today)
    group_by = request.args.get("groupBy", "day")
    try:
        start, end = analytics.period(
            datetime.combine(first, datetime.min.time(), UTC),
            datetime.combine(last, datetime.min.time(), UTC),
            now,
        )
        groups = analytics.report(start, end + timedelta(days=1), group_by, now)  # `to` is a whole day
        problem = None
    except ServiceError as exc:
        groups, problem = [], exc.message
    chart = {
        "labels": [group.label for group in groups],
        "energyKwh": [round(group.energy_wh / 1000, 3) for group in groups],
        "utilization": [round(group.utilization * 100, 2) for group in groups],
    }
    return render_template(
        "dashboard/analytics.html",
        groups=groups,
        chart=chart,
        first=first,
        last=last,
        group_by=group_by,
        groupings=analytics.GROUPINGS,
        problem=problem,
        totals=_totals(groups),
    )


def _totals(groups: list) -> dict:
    revenue: dict[str, int] = {}
    for group in groups:
        for currency, minor in group.revenue_minor.items():
            revenue[currency] = revenue.get(currency, 0) + minor
    return {
        "energy_wh": sum(group.energy_wh for group in groups),
        "sessions": sum(group.sessions for group in groups),
        "revenue_minor": revenue,
    }


def _date_arg(name: str, default):
    """A day from the query string; a malformed one, or one outside the years records can have
    (where date arithmetic would overflow), is the default."""
    try:
        day = date.fromisoformat(request.args.get(name, ""))
    except ValueError:
        return default
    return day if analytics.EARLIEST.date() <= day < analytics.LATEST.date() else default


def _connected(charge_point_ids: set[str]) -> set[str]:
    """Those of `charge_point_ids` connected to any node of the cluster."""
    return set(presence.connections(db.session, sorted(charge_point_ids)))


def _positive_int(text: str | None, default: int) -> int:
    try:
        return max(1, min(int(text or default), 100_000))
    except ValueError:
        return default


def _summary() -> network.Summary:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return network.summary(today)


def _alerts() -> dict:
    now = datetime.now(UTC)
    minutes = current_app.config["OFFLINE_ALERT_MINUTES"]
    return {
        "faulted": network.faulted_connectors(),
        "offline": network.offline_for(minutes, now),
        "offline_minutes": minutes,
        "outbox": outbox.backlog(),
        "dead_letters": {
            queue: depth
            for queue, depth in (dead_letters.current_depths(current_app._get_current_object()) or {}).items()
            if depth
        },
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


record_pages.register(bp)
