"""Operators running the network: id tags, chargers' local authorization lists, accounts, and a
transaction with its meter samples (SPEC "Network operations")."""

from __future__ import annotations

from flask import current_app, g
from flask_smorest import Blueprint
from sqlalchemy import select

from csms.api.pagination import paginate
from csms.api.security import requires
from csms.extensions import db
from csms.models import ChargePoint, ChargingSession, IdTag, MeterSample, Transaction, User
from csms.pipeline import announce as cms_events
from csms.schemas import network as schemas
from csms.schemas.common import INT32_MAX, Error
from csms.services import id_tags, local_lists, users
from csms.services.errors import NotFound

bp = Blueprint(
    "network", __name__, url_prefix="/api/cms", description="Id tags, local lists, users, transactions"
)


def _announce(kind: str, entity_type: str, entity_id, payload: dict | None) -> None:
    cms_events.announce(kind, entity_type, entity_id, payload, g.identity.user_id)


# --- id tags -------------------------------------------------------------------------------------------


@bp.get("/id-tags")
@requires("operator")
@bp.arguments(schemas.IdTagListArgs, location="query")
@bp.response(200, schemas.IdTagPage)
def list_id_tags(args):
    """Id tags, by idTag; `q` searches the tag and its note, the others filter."""
    query = id_tags.search(args.get("q"), args.get("status"), args.get("parent_id_tag"), args.get("owner_id"))
    return paginate(query, IdTag.id_tag, args)


@bp.post("/id-tags")
@requires("operator")
@bp.arguments(schemas.IdTag)
@bp.response(201, schemas.IdTag)
@bp.alt_response(409, schema=Error, description="the idTag is already issued")
@bp.alt_response(422, schema=Error, description="unknown parent or owner")
def create_id_tag(body):
    """Issue an id tag; every web node decides by it at once, and the local lists follow."""
    tag = id_tags.create(body.pop("id_tag"), **body)
    _announce("created", "id_tag", tag.id_tag, schemas.IdTag().dump(tag))
    return tag


@bp.get("/id-tags/<string:id_tag>")
@requires("operator")
@bp.response(200, schemas.IdTag)
@bp.alt_response(404, schema=Error)
def get_id_tag(id_tag: str):
    """One id tag."""
    return id_tags.get(id_tag)


@bp.patch("/id-tags/<string:id_tag>")
@requires("operator")
@bp.arguments(schemas.IdTagPatch)
@bp.response(200, schemas.IdTag)
@bp.alt_response(404, schema=Error)
@bp.alt_response(422, schema=Error, description="unknown parent or owner")
def update_id_tag(body, id_tag: str):
    """Block, accept or expire a tag, move it to another group or owner, note something; at once."""
    tag = id_tags.change(id_tag, body)
    _announce("updated", "id_tag", tag.id_tag, schemas.IdTag().dump(tag))
    return tag


@bp.delete("/id-tags/<string:id_tag>")
@requires("operator")
@bp.response(204)
@bp.alt_response(404, schema=Error)
@bp.alt_response(409, schema=Error, description="it heads a group that has members")
def delete_id_tag(id_tag: str):
    """Withdraw a tag: it is Invalid from now on, everywhere."""
    id_tags.delete(id_tag)
    _announce("deleted", "id_tag", id_tag, None)


# --- local authorization lists ---------------------------------------------------------------------


@bp.get("/points/<string:charge_point_id>/local-list")
@requires("operator")
@bp.response(200, schemas.LocalList)
@bp.alt_response(404, schema=Error)
def get_local_list(charge_point_id: str):
    """The charger's local list: policy, the version sent and the one it confirmed, the entries it
    should hold, the last synchronisation and its outcome."""
    return local_lists.view(charge_point_id)


@bp.patch("/points/<string:charge_point_id>/local-list")
@requires("operator")
@bp.arguments(schemas.LocalListPatch)
@bp.response(200, schemas.LocalList)
@bp.alt_response(404, schema=Error)
@bp.alt_response(422, schema=Error, description="the parent policy without an existing parentIdTag")
def set_local_list_policy(body, charge_point_id: str):
    """Choose the tags the charger's list holds (none, all, or one group's); a Full update follows."""
    found = local_lists.set_policy(charge_point_id, body["policy"], body.get("parent_id_tag"))
    _announce("updated", "local_list", charge_point_id, {"policy": found.policy})
    return found


# --- transactions with their samples -----------------------------------------------------------------


def samples_page(transaction_id: int, args: dict) -> dict:
    """A transaction's samples, oldest first; empty dimensions as null."""
    query = (
        select(MeterSample)
        .where(MeterSample.transaction_id == transaction_id)
        .order_by(MeterSample.sampled_at)
    )
    page = paginate(query, MeterSample.id, args)
    page["items"] = [
        {
            **{c.key: getattr(sample, c.key) for c in MeterSample.__table__.columns},
            **{name: getattr(sample, name) or None for name in ("phase", "location", "context")},
        }
        for sample in page["items"]
    ]
    return page


@bp.get("/transactions/<int:transaction_id>")
@requires("operator")
@bp.arguments(schemas.SampleArgs, location="query")
@bp.response(200, schemas.TransactionDetail)
@bp.alt_response(404, schema=Error)
def get_transaction(args, transaction_id: int):
    """One transaction with its meter samples (measurand, phase, unit, context, location), oldest
    first, paged (`page`, `perPage`, up to 5,000 a page)."""
    row = (
        db.session.execute(
            select(Transaction, ChargePoint.charge_point_id, ChargingSession.id, ChargingSession.cost_minor)
            .join(ChargePoint, ChargePoint.id == Transaction.charge_point_id)
            .outerjoin(ChargingSession, ChargingSession.transaction_id == Transaction.id)
            .where(Transaction.id == transaction_id)
        ).first()
        if 0 < transaction_id <= INT32_MAX
        else None
    )
    if row is None:
        raise NotFound(f"no transaction {transaction_id}", code="transaction_not_found")
    transaction, charge_point_id, session_id, cost = row
    item = {c.key: getattr(transaction, c.key) for c in Transaction.__table__.columns}
    return {
        **item,
        "charge_point_id": charge_point_id,
        "session_id": session_id,
        "cost": cost,
        "samples": samples_page(transaction_id, args),
    }


# --- users -------------------------------------------------------------------------------------------


@bp.get("/users")
@requires("operator")
@bp.arguments(schemas.UserListArgs, location="query")
@bp.response(200, schemas.UserPage)
def list_users(args):
    """Accounts, by id; `q` searches the email, `role` and `disabled` filter."""
    return paginate(users.search(args.get("q"), args.get("role"), args.get("disabled")), User.id, args)


@bp.get("/users/<int:user_id>")
@requires("operator")
@bp.response(200, schemas.User)
@bp.alt_response(404, schema=Error)
def get_user(user_id: int):
    """One account."""
    return users.find(user_id)


@bp.patch("/users/<int:user_id>")
@requires("operator")
@bp.arguments(schemas.UserPatch)
@bp.response(200, schemas.User)
@bp.alt_response(404, schema=Error)
@bp.alt_response(409, schema=Error, description="an operator's own role or access")
def update_user(body, user_id: int):
    """Change an account's role, or disable it (it cannot log in, and its tokens stop working at
    once) or enable it again."""
    user = users.change(
        users.find(user_id),
        role=body.get("role"),
        disabled=body.get("disabled"),
        by=g.identity.user_id,
        currency=current_app.config["CURRENCY"],
    )
    _announce("updated", "user", user.id, {"role": user.role, "disabled": user.disabled_at is not None})
    return user
