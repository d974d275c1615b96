"""The dashboard's forms for stations, tariffs, new charge points and a charge point's security
profile.

A form is loaded through the REST API's own marshmallow schema (its fields named as in the API), so
both accept and refuse the same values, and saved through the same services; every change is
announced as a `cms.*` event like the API's.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, g, redirect, render_template, request, url_for
from marshmallow import Schema, ValidationError, fields

from csms.dashboard import signin
from csms.extensions import db
from csms.models import ChargePoint, RegistrationStatus, Station, Tariff
from csms.pipeline.announce import announce
from csms.schemas import cms as schemas
from csms.services import records
from csms.services.errors import ServiceError


def form_data(schema: Schema, form: Any) -> dict[str, Any]:
    """The submitted form as the schema's input: a checkbox is true when present, an empty optional
    field is null (or left out when it may not be null)."""
    data: dict[str, Any] = {}
    for name, field in schema.fields.items():
        if field.dump_only:
            continue
        key = field.data_key or name
        if isinstance(field, fields.Boolean):
            data[key] = key in form
            continue
        value = form.get(key, "").strip()
        if value:
            data[key] = value
        elif field.allow_none:
            data[key] = None
    return data


# The inputs of each form: (name as in the API, label, input type, required).
INPUTS = {
    "stations": (
        ("name", "Name", "text", True),
        ("address", "Address", "text", False),
        ("latitude", "Latitude", "text", False),
        ("longitude", "Longitude", "text", False),
    ),
    "tariffs": (
        ("name", "Name", "text", True),
        ("currency", "Currency (ISO 4217)", "text", True),
        ("energyPrice", "Energy price per kWh", "text", True),
        ("timePrice", "Time price per hour", "text", False),
        ("sessionFee", "Session fee", "text", False),
        ("reservationFee", "Reservation fee", "text", False),
        ("taxPercent", "Tax %", "text", False),
        ("isDefault", "Default tariff", "checkbox", False),
    ),
}

# How a charger may connect, as the forms and the charger's page say it (csms.ocpp.gateway).
SECURITY_PROFILES = {
    0: "0: no credentials (identified by its URL alone)",
    1: "1: HTTP Basic auth",
    2: "2: HTTP Basic auth over TLS",
}

# kind → (model, schema, entity type, columns shown in the list)
KINDS = {
    "stations": (Station, schemas.Station, "station", ("name", "address")),
    "tariffs": (Tariff, schemas.Tariff, "tariff", ("name", "currency", "energy_price", "is_default")),
}


def register(bp: Blueprint) -> None:
    for kind in KINDS:
        bp.add_url_rule(f"/{kind}", f"{kind}_list", _guarded(_list, kind), methods=["GET"])
        bp.add_url_rule(f"/{kind}", f"{kind}_create", _guarded(_create, kind), methods=["POST"])
        bp.add_url_rule(f"/{kind}/<int:item_id>", f"{kind}_edit", _guarded(_edit, kind), methods=["GET"])
        bp.add_url_rule(f"/{kind}/<int:item_id>", f"{kind}_update", _guarded(_update, kind), methods=["POST"])
        bp.add_url_rule(
            f"/{kind}/<int:item_id>/delete", f"{kind}_delete", _guarded(_delete, kind), methods=["POST"]
        )
    bp.add_url_rule("/points/new", "point_new", signin.operator_required(_point_form), methods=["GET"])
    bp.add_url_rule("/points/new", "point_create", signin.operator_required(_point_create), methods=["POST"])
    bp.add_url_rule(
        "/chargers/<charge_point_id>/security-profile",
        "point_security_profile",
        signin.operator_required(_point_security_profile),
        methods=["POST"],
    )


def _guarded(view, kind: str):
    def bound(**kwargs):
        return view(kind, **kwargs)

    bound.__name__ = f"{kind}_{view.__name__.strip('_')}"
    bound.__doc__ = view.__doc__
    return signin.operator_required(bound)


def _list(kind: str, errors: dict | None = None, values: dict | None = None, status: int = 200):
    """The records and a form to add one."""
    model, _, entity_type, columns = KINDS[kind]
    items = db.session.scalars(db.select(model).order_by(model.name)).all()
    page = render_template(
        "dashboard/records.html",
        kind=kind,
        entity_type=entity_type,
        items=items,
        columns=columns,
        inputs=INPUTS[kind],
        item=None,
        errors=errors or {},
        values=values or {},
    )
    return page, status


def _create(kind: str):
    """Add a record from the form."""
    model, schema, entity_type, _ = KINDS[kind]
    data = form_data(schema(), request.form)
    try:
        item = records.create(model, schema().load(data), entity_type)
    except ValidationError as exc:
        return _list(kind, errors=exc.messages, values=data, status=422)
    except ServiceError as exc:
        flash(exc.message, "error")
        return _list(kind, values=data, status=exc.status)
    announce("created", entity_type, item.id, schema().dump(item), g.operator.id)
    flash(f"{entity_type.capitalize()} {item.name!r} created.", "ok")
    return redirect(url_for(f"dashboard.{kind}_list"))


def _edit(kind: str, item_id: int, errors: dict | None = None, status: int = 200):
    """One record's form."""
    model, schema, entity_type, _ = KINDS[kind]
    try:
        item = records.get(model, item_id)
    except ServiceError:
        return render_template(
            "dashboard/error.html", title="Not found", message=f"No such {entity_type}."
        ), 404
    values = schema().dump(item)
    page = render_template(
        "dashboard/records.html",
        kind=kind,
        entity_type=entity_type,
        items=[],
        columns=(),
        inputs=INPUTS[kind],
        item=item,
        errors=errors or {},
        values={**values, **form_data(schema(), request.form)} if request.method == "POST" else values,
    )
    return page, status


def _update(kind: str, item_id: int):
    """Save a record's form."""
    model, schema, entity_type, _ = KINDS[kind]
    try:
        item = records.get(model, item_id)
        item = records.update(item, schema().load(form_data(schema(), request.form)), entity_type)
    except ValidationError as exc:
        return _edit(kind, item_id, errors=exc.messages, status=422)
    except ServiceError as exc:
        flash(exc.message, "error")
        return _edit(kind, item_id, status=exc.status)
    announce("updated", entity_type, item.id, schema().dump(item), g.operator.id)
    flash(f"{entity_type.capitalize()} {item.name!r} saved.", "ok")
    return redirect(url_for(f"dashboard.{kind}_list"))


def _delete(kind: str, item_id: int):
    """Delete a record that nothing uses."""
    model, _, entity_type, _ = KINDS[kind]
    try:
        records.delete(records.get(model, item_id), entity_type)
    except ServiceError as exc:
        flash(exc.message, "error")
        return redirect(url_for(f"dashboard.{kind}_edit", item_id=item_id))
    announce("deleted", entity_type, item_id, None, g.operator.id)
    flash(f"{entity_type.capitalize()} deleted.", "ok")
    return redirect(url_for(f"dashboard.{kind}_list"))


def _point_form(errors: dict | None = None, values: dict | None = None, status: int = 200):
    """The form to register a charge point."""
    page = render_template(
        "dashboard/point_new.html",
        stations=db.session.scalars(db.select(Station).order_by(Station.name)).all(),
        tariffs=db.session.scalars(db.select(Tariff).order_by(Tariff.name)).all(),
        statuses=[s.value for s in RegistrationStatus],
        security_profiles=SECURITY_PROFILES,
        errors=errors or {},
        values=values or {},
    )
    return page, status


def _point_create():
    """Register a charge point; its key is shown once, on the page this answers."""
    schema = schemas.PointCreate()
    data = form_data(schema, request.form)
    try:
        registration = records.register_point(schema.load(data))
    except ValidationError as exc:
        return _point_form(errors=exc.messages, values=data, status=422)
    except ServiceError as exc:
        flash(exc.message, "error")
        return _point_form(values=data, status=exc.status)
    announce(
        "created",
        "point",
        registration.charge_point_id,
        {"chargePointId": registration.charge_point_id},
        g.operator.id,
    )
    point = db.session.scalar(
        db.select(ChargePoint).where(ChargePoint.charge_point_id == registration.charge_point_id)
    )
    return render_template("dashboard/point_created.html", point=point, registration=registration)


def _point_security_profile(charge_point_id: str):
    """Change how a charger must connect; every node applies it to the charger's next connection."""
    back = redirect(url_for("dashboard.charger", charge_point_id=charge_point_id))
    point = db.session.scalar(db.select(ChargePoint).where(ChargePoint.charge_point_id == charge_point_id))
    if point is None:
        return render_template("dashboard/error.html", title="Not found", message="No such charger."), 404
    schema = schemas.PointUpdate(only=("security_profile",))
    try:
        fields = schema.load(form_data(schema, request.form))
        records.update_point(point, fields)
    except ValidationError as exc:
        flash(" ".join(" ".join(m) for m in exc.messages.values()), "error")
        return back
    except ServiceError as exc:
        flash(exc.message, "error")
        return back
    announce("updated", "point", charge_point_id, {"changed": sorted(fields)}, g.operator.id)
    flash(f"{charge_point_id}: security profile {SECURITY_PROFILES[point.security_profile]}.", "ok")
    return back
