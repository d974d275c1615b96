"""Operators' webhooks: register an endpoint for events by routing-key pattern, see its deliveries."""

from __future__ import annotations

from flask import g
from flask_smorest import Blueprint
from sqlalchemy import select

from csms.api.pagination import paginate
from csms.api.security import requires
from csms.models import Webhook, WebhookDelivery
from csms.schemas import webhooks as schemas
from csms.schemas.common import Error, PageArgs
from csms.services import webhooks

bp = Blueprint(
    "webhooks", __name__, url_prefix="/api/cms/webhooks", description="Webhooks for integration events"
)


@bp.get("")
@requires("operator")
@bp.arguments(PageArgs, location="query")
@bp.response(200, schemas.WebhookPage)
def list_webhooks(args):
    """Every webhook, with whether it is enabled (and why not)."""
    return paginate(select(Webhook), Webhook.id, args)


@bp.post("")
@requires("operator")
@bp.arguments(schemas.Webhook)
@bp.response(201, schemas.NewWebhook)
@bp.alt_response(422, schema=Error)
def create_webhook(body):
    """Register a webhook; the answer carries its signing secret, shown this once."""
    return webhooks.create(body["url"], body["events"], body.get("description"), g.identity.user_id)


@bp.get("/<int:webhook_id>")
@requires("operator")
@bp.response(200, schemas.Webhook)
@bp.alt_response(404, schema=Error)
def get_webhook(webhook_id: int):
    """One webhook (without its secret)."""
    return webhooks.get(webhook_id)


@bp.patch("/<int:webhook_id>")
@requires("operator")
@bp.arguments(schemas.Webhook(partial=True))
@bp.response(200, schemas.Webhook)
@bp.alt_response(404, schema=Error)
@bp.alt_response(422, schema=Error)
def update_webhook(body, webhook_id: int):
    """Change the URL, events or description; `enabled: true` enables a disabled webhook again."""
    return webhooks.update_webhook(webhook_id, body)


@bp.delete("/<int:webhook_id>")
@requires("operator")
@bp.response(204)
@bp.alt_response(404, schema=Error)
def delete_webhook(webhook_id: int):
    """Remove a webhook and its delivery log."""
    webhooks.remove(webhook_id)


@bp.get("/<int:webhook_id>/deliveries")
@requires("operator")
@bp.arguments(PageArgs, location="query")
@bp.response(200, schemas.DeliveryPage)
@bp.alt_response(404, schema=Error)
def list_deliveries(args, webhook_id: int):
    """The webhook's deliveries, newest first: state, attempts, the last answer or error."""
    webhooks.get(webhook_id)
    query = select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
    return paginate(query, WebhookDelivery.id.desc(), args)
