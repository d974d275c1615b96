"""Operators' CMS: stations, charge points and tariffs (list, create, get, update, delete, each
announced as a `cms.*` event), and per-charger transactions and OCPP message log.

An update is a `PATCH` (the fields given) or a `PUT` (a full update, validated by the create schema:
the fields left out go back to their defaults), as the clients of the replaced system send it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import current_app, g
from flask_smorest import Blueprint
from sqlalchemy import select

from csms.api.pagination import paginate
from csms.api.security import requires
from csms.cluster import presence
from csms.extensions import db
from csms.models import ChargePoint, ChargingSession, OcppMessage, Station, Tariff, Transaction
from csms.pipeline import announce as cms_events
from csms.pipeline.addresses import REALLOCATE_SITES
from csms.schemas import cms as schemas
from csms.schemas.common import Error, replacing
from csms.services import analytics, bills, maintenance, records, reservations
from csms.services.errors import InvalidInput, NotFound
from csms.services.money import format_minor

bp = Blueprint("cms", __name__, url_prefix="/api/cms", description="Stations, charge points, tariffs")


def announce(kind: str, entity_type: str, entity_id: Any, payload: dict | None) -> None:
    """Publish `cms.<entity>.<kind>` as done by the token's user."""
    cms_events.announce(kind, entity_type, entity_id, payload, g.identity.user_id)


# A station's fields that change its shares (csms.services.load_management).
_LOAD_FIELDS = {"max_current_a", "max_power_w", "min_current_a", "strategy"}


def _reallocate_if_limited(item, fields: dict) -> None:
    """A station whose limit or strategy changed shares its load again (a lowered limit at once)."""
    if isinstance(item, Station) and _LOAD_FIELDS & set(fields):
        trigger = {"station_id": item.id, "reason": "limit changed"}
        current_app.extensions["ocpp"].handoff.submit(REALLOCATE_SITES, trigger, durable=False)


def _register_crud(name: str, model, schema, page_schema, entity_type: str, search_column) -> None:
    """list/create/get/update/delete for a simple resource: stations and tariffs share it."""
    many, one = f"/{name}", f"/{name}/<int:item_id>"
    dump = schema()

    @bp.get(many, endpoint=f"list_{name}")
    @requires("operator")
    @bp.arguments(schemas.ListArgs, location="query")
    @bp.response(200, page_schema)
    def list_items(args):
        query = select(model)
        if args.get("q"):
            query = query.where(search_column.ilike(f"%{args['q']}%"))
        return paginate(query, model.id, args)

    @bp.post(many, endpoint=f"create_{name}")
    @requires("operator")
    @bp.arguments(schema)
    @bp.response(201, schema)
    @bp.alt_response(409, schema=Error)
    def create(body):
        item = records.create(model, body, entity_type)
        announce("created", entity_type, item.id, dump.dump(item))
        return item

    @bp.get(one, endpoint=f"get_{name}")
    @requires("operator")
    @bp.response(200, schema)
    @bp.alt_response(404, schema=Error)
    def get(item_id: int):
        return records.get(model, item_id)

    @bp.patch(one, endpoint=f"update_{name}")
    @requires("operator")
    @bp.arguments(schema(partial=True))
    @bp.response(200, schema)
    @bp.alt_response(404, schema=Error)
    @bp.alt_response(409, schema=Error)
    def update(body, item_id: int):
        item = records.update(records.get(model, item_id), body, entity_type)
        announce("updated", entity_type, item.id, dump.dump(item))
        _reallocate_if_limited(item, body)
        return item

    @bp.put(one, endpoint=f"replace_{name}")
    @requires("operator")
    @bp.arguments(schema)
    @bp.response(200, schema)
    @bp.alt_response(404, schema=Error)
    @bp.alt_response(409, schema=Error)
    def replace(body, item_id: int):
        fields = replacing(dump, body)
        item = records.update(records.get(model, item_id), fields, entity_type)
        announce("updated", entity_type, item.id, dump.dump(item))
        _reallocate_if_limited(item, fields)
        return item

    @bp.delete(one, endpoint=f"delete_{name}")
    @requires("operator")
    @bp.response(204)
    @bp.alt_response(404, schema=Error)
    @bp.alt_response(409, schema=Error)
    def delete(item_id: int):
        records.delete(records.get(model, item_id), entity_type)
        announce("deleted", entity_type, item_id, None)

    for view in (list_items, create, get, update, delete):
        view.__doc__ = f"{view.__name__.replace('_', ' ').capitalize()} {entity_type}s."
    replace.__doc__ = f"Update {entity_type}s fully: the fields left out go back to their defaults."


_register_crud("stations", Station, schemas.Station, schemas.StationPage, "station", Station.name)
_register_crud("tariffs", Tariff, schemas.Tariff, schemas.TariffPage, "tariff", Tariff.name)


# --- charge points ---------------------------------------------------------------------------------


def _with_connections(points: list[ChargePoint]) -> list[ChargePoint]:
    """Each point's connection as the whole cluster sees it (one query for the lot); the time of its
    last message where this node holds it."""
    held = presence.connections(db.session, [p.charge_point_id for p in points])
    registry = current_app.extensions["ocpp"].registry
    for point in points:
        where = held.get(point.charge_point_id)
        local = registry.info(point.charge_point_id)
        point.connection = {
            "connected": where is not None,
            "node": where.node_id if where else None,
            "since": where.since if where else None,
            "connected_since": where.since if where else None,
            "last_message_at": local.last_message_at if local and where else None,
        }
    return points


def _with_connection(point: ChargePoint) -> ChargePoint:
    return _with_connections([point])[0]


def _point_or_404(charge_point_id: str) -> ChargePoint:
    point = db.session.scalar(select(ChargePoint).where(ChargePoint.charge_point_id == charge_point_id))
    if point is None:
        raise NotFound(f"unknown charge point {charge_point_id!r}", code="charge_point_not_found")
    return point


@bp.get("/points")
@requires("operator")
@bp.arguments(schemas.PointListArgs, location="query")
@bp.response(200, schemas.PointPage)
def list_points(args):
    """Charge points with their status, connectors, last seen and connection state (cluster-wide);
    `connected=true|false` keeps those connected to any node, or to none."""
    query = select(ChargePoint)
    if args.get("q"):
        query = query.where(ChargePoint.charge_point_id.ilike(f"%{args['q']}%"))
    if "connected" in args:
        query = query.where(presence.connected_filter(ChargePoint.charge_point_id, args["connected"]))
    page = paginate(query, ChargePoint.id, args)
    page["items"] = _with_connections(page["items"])
    return page


@bp.post("/points")
@requires("operator")
@bp.arguments(schemas.PointCreate)
@bp.response(201, schemas.PointCreated)
@bp.alt_response(409, schema=Error)
@bp.alt_response(422, schema=Error)
def create_point(body):
    """Register a charge point; its authorization key is generated unless given, and shown only here."""
    registration = records.register_point(body)
    point = _point_or_404(registration.charge_point_id)
    announce("created", "point", point.charge_point_id, {"chargePointId": point.charge_point_id})
    _with_connection(point).auth_key = registration.auth_key
    return point


@bp.get("/points/<string:charge_point_id>")
@requires("operator")
@bp.response(200, schemas.PointDetail)
@bp.alt_response(404, schema=Error)
def get_point(charge_point_id: str):
    """One charge point: status, connectors' status and availability, last seen, connection state,
    tariff, open reservations, and the outcome of the last maintenance calls."""
    point = _with_connection(_point_or_404(charge_point_id))
    point.reservations = sorted(reservations.open_by_connector(point.id).values(), key=lambda r: r.id)
    point.operations = maintenance.operations(point.id)
    return point


@bp.patch("/points/<string:charge_point_id>")
@requires("operator")
@bp.arguments(schemas.PointUpdate)
@bp.response(200, schemas.Point)
@bp.alt_response(404, schema=Error)
def update_point(body, charge_point_id: str):
    """Change station, tariff, registration status (accept a Pending charger), security profile or
    rotate its key."""
    point = _point_or_404(charge_point_id)
    before = point.station_id
    records.update_point(point, body)
    announce("updated", "point", charge_point_id, {"changed": _changed(body)})
    if {"station_id", "max_current_a"} & set(body):
        _reallocate_sites(before, point)
    return _with_connection(point)


@bp.put("/points/<string:charge_point_id>")
@requires("operator")
@bp.arguments(schemas.PointReplace)
@bp.response(200, schemas.Point)
@bp.alt_response(404, schema=Error)
@bp.alt_response(422, schema=Error)
def replace_point(body, charge_point_id: str):
    """Update a charge point fully (the create schema less its connectors): the fields left out go
    back to their defaults, except its key, kept unless given; `chargePointId` must be its own."""
    point = _point_or_404(charge_point_id)
    if body.pop("charge_point_id") != charge_point_id:
        raise InvalidInput(
            "chargePointId is the charger's identity and cannot change", code="charge_point_id_mismatch"
        )
    fields = replacing(schemas.PointReplace(), body, keep=("charge_point_id", "auth_key"))
    before = point.station_id
    records.update_point(point, fields)
    announce("updated", "point", charge_point_id, {"changed": _changed(fields)})
    if {"station_id", "max_current_a"} & set(fields):
        _reallocate_sites(before, point)
    return _with_connection(point)


def _changed(fields: dict) -> list[str]:
    """The fields an update set, as the `cms.point.updated` event names them (a key only by name)."""
    return sorted(k for k in fields if k != "auth_key") + (["authKey"] if "auth_key" in fields else [])


def _reallocate_sites(before: int | None, point: ChargePoint) -> None:
    """A charger that joins, leaves or changes its maximum at a site changes the shares there; one
    that joins gets its TxDefaultProfile (csms.services.load_management)."""
    handoff = current_app.extensions["ocpp"].handoff
    if before is not None and before != point.station_id:
        handoff.submit(REALLOCATE_SITES, {"station_id": before, "reason": "charger left"}, durable=False)
    if point.station_id is not None:
        trigger = {"station_id": point.station_id, "reason": "charger changed", "booted": [point.id]}
        handoff.submit(REALLOCATE_SITES, trigger, durable=False)


@bp.delete("/points/<string:charge_point_id>")
@requires("operator")
@bp.response(204)
@bp.alt_response(404, schema=Error)
@bp.alt_response(409, schema=Error, description="it has transactions")
def delete_point(charge_point_id: str):
    """Delete a charge point that never had a transaction; one that had is kept for the records."""
    records.delete_point(_point_or_404(charge_point_id))
    announce("deleted", "point", charge_point_id, None)


# --- records -----------------------------------------------------------------------------------------


@bp.get("/transactions")
@requires("operator")
@bp.arguments(schemas.ByChargePoint, location="query")
@bp.response(200, schemas.TransactionPage)
def list_transactions(args):
    """Transactions, newest first, with energy (Wh), cost and state; filter by chargePointId."""
    query = (
        select(
            Transaction,
            ChargePoint.charge_point_id.label("cp"),
            ChargingSession.id.label("session_id"),
            ChargingSession.cost_minor.label("cost"),
        )
        .join(ChargePoint, ChargePoint.id == Transaction.charge_point_id)
        .outerjoin(ChargingSession, ChargingSession.transaction_id == Transaction.id)
    )
    if args.get("charge_point_id"):
        query = query.where(ChargePoint.charge_point_id == args["charge_point_id"])
    page = paginate(query, Transaction.id.desc(), args, scalars=False)
    items = []
    for transaction, cp, session_id, cost in page["items"]:
        item = {c.key: getattr(transaction, c.key) for c in Transaction.__table__.columns}
        bill = bills.bill_view(transaction) or {}
        items.append(
            {
                **item,
                "charge_point_id": cp,
                "session_id": session_id,
                "cost": cost if session_id is not None else transaction.cost_minor,
                "breakdown": bill.get("breakdown"),
            }
        )
    return {**page, "items": items}


@bp.get("/messages")
@requires("operator")
@bp.arguments(schemas.ByChargePoint, location="query")
@bp.response(200, schemas.MessagePage)
def list_messages(args):
    """The OCPP message log, both directions, newest first; filter by chargePointId."""
    query = select(OcppMessage)
    if args.get("charge_point_id"):
        query = query.where(OcppMessage.charge_point_id == args["charge_point_id"])
    return paginate(query, OcppMessage.id.desc(), args)


# --- analytics ---------------------------------------------------------------------------------------


@bp.get("/analytics")
@requires("operator")
@bp.arguments(schemas.AnalyticsArgs, location="query")
@bp.response(200, schemas.AnalyticsReport)
@bp.alt_response(422, schema=Error)
def analytics_report(args):
    """Energy (Wh), revenue, sessions and utilization per day, station or charger over a period."""
    now = datetime.now(UTC)
    start, end = analytics.period(args.get("start"), args.get("end"), now)
    groups = analytics.report(start, end, args["group_by"], now)
    return {
        "start": start,
        "end": end,
        "group_by": args["group_by"],
        "groups": [
            {
                "key": group.key,
                "label": group.label,
                "connectors": group.connectors,
                "energy_wh": group.energy_wh,
                "sessions": group.sessions,
                "revenue": {currency: format_minor(minor) for currency, minor in group.revenue_minor.items()},
                "unbilled": {
                    currency: format_minor(minor) for currency, minor in group.unbilled_minor.items()
                },
                "unbilled_wh": group.unbilled_wh,
                "utilization": group.utilization,
            }
            for group in groups
        ],
    }
