"""Smart charging for operators: charging profiles (stored, sent, cleared, each answer recorded),
a charger's composite schedule, and a site's load (limit, allocations, measured draw, history)."""

from __future__ import annotations

from flask import current_app, g
from flask_smorest import Blueprint

from csms.api.pagination import paginate
from csms.api.security import requires
from csms.cluster import charger_calls
from csms.models import ChargingProfile, Station
from csms.schemas import smart_charging as schemas
from csms.schemas.common import Error
from csms.services import charging_profiles, records, site_load

bp = Blueprint(
    "smart_charging", __name__, url_prefix="/api/cms", description="Smart charging: profiles and site load"
)


def _calls():
    return charger_calls.for_app(current_app), current_app.config["LOAD_CALL_TIMEOUT"]


@bp.post("/charging-profiles")
@requires("operator")
@bp.arguments(schemas.NewChargingProfile)
@bp.response(201, schemas.ChargingProfile)
@bp.alt_response(404, schema=Error, description="unknown charger")
def create_profile(body):
    """Store a charging profile and send it (SetChargingProfile); `status` is the charger's answer,
    or `failed` with the reason (offline, no answer)."""
    profile = schemas.Profile().dump(body["cs_charging_profiles"])
    calls, timeout = _calls()
    return charging_profiles.create(
        body["charge_point_id"], body["connector_id"], profile, calls, timeout, g.identity.user_id
    )


@bp.get("/charging-profiles")
@requires("operator")
@bp.arguments(schemas.ProfileListArgs, location="query")
@bp.response(200, schemas.ChargingProfilePage)
def list_profiles(args):
    """Stored charging profiles, newest first: the operators' and the load manager's own."""
    return paginate(charging_profiles.listing(args), ChargingProfile.id.desc(), args)


@bp.get("/charging-profiles/<int:profile_id>")
@requires("operator")
@bp.response(200, schemas.ChargingProfile)
@bp.alt_response(404, schema=Error, description="no such profile")
def get_profile(profile_id: int):
    """One stored charging profile and the charger's answer."""
    return charging_profiles.get(profile_id)


@bp.delete("/charging-profiles/<int:profile_id>")
@requires("operator")
@bp.response(200, schemas.ChargingProfile)
@bp.alt_response(404, schema=Error, description="no such profile")
@bp.alt_response(409, schema=Error, description="already cleared, or the charger did not clear it")
def clear_profile(profile_id: int):
    """Clear a charging profile on its charger (ClearChargingProfile by id), then mark it cleared."""
    calls, timeout = _calls()
    return charging_profiles.clear(profile_id, calls, timeout)


@bp.get("/charging-profiles/composite")
@requires("operator")
@bp.arguments(schemas.CompositeArgs, location="query")
@bp.response(200, schemas.CompositeSchedule)
@bp.alt_response(404, schema=Error, description="unknown charger")
@bp.alt_response(409, schema=Error, description="the charger did not answer")
def composite_schedule(args):
    """Ask a charger for a connector's composite schedule (GetCompositeSchedule)."""
    calls, timeout = _calls()
    response = charging_profiles.composite(
        args["charge_point_id"],
        args["connector_id"],
        args["duration"],
        args.get("charging_rate_unit"),
        calls,
        timeout,
    )
    return {
        "charge_point_id": args["charge_point_id"],
        "connector_id": args["connector_id"],
        "response": response,
    }


@bp.get("/stations/<int:station_id>/load")
@requires("operator")
@bp.response(200, schemas.Load)
@bp.alt_response(404, schema=Error, description="no such station")
def station_load(station_id: int):
    """A site's limit, what each running transaction is allowed and draws, and the last changes."""
    return site_load.load_of(records.get(Station, station_id))
