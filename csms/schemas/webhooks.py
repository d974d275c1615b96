"""Webhooks and their deliveries (`/api/cms/webhooks`)."""

from marshmallow import Schema, fields, validate

from csms.schemas.common import page_of

PATTERN = validate.Regexp(
    r"^(\*|#|[a-z0-9_-]+)(\.(\*|#|[a-z0-9_-]+))*$",
    error="a routing-key pattern: dotted words, * for one word, # for any number (notification.#)",
)


class Webhook(Schema):
    id = fields.Integer(dump_only=True)
    url = fields.String(
        required=True,
        validate=validate.Length(min=1, max=2048),
        metadata={"description": "http:// or https:// endpoint that receives POSTed events"},
    )
    events = fields.List(
        fields.String(validate=[validate.Length(min=1, max=255), PATTERN]),
        required=True,
        validate=validate.Length(min=1, max=50),
        metadata={"description": "routing-key patterns, as an AMQP topic binding: `*` one word, `#` any"},
    )
    description = fields.String(allow_none=True, validate=validate.Length(max=255))
    enabled = fields.Boolean(
        metadata={"description": "false: disabled (by an operator or after a day of failures)"}
    )
    disabled_reason = fields.String(data_key="disabledReason", dump_only=True, allow_none=True)
    disabled_at = fields.DateTime(data_key="disabledAt", dump_only=True, allow_none=True)
    failing_since = fields.DateTime(data_key="failingSince", dump_only=True, allow_none=True)
    created_at = fields.DateTime(data_key="createdAt", dump_only=True)
    updated_at = fields.DateTime(data_key="updatedAt", dump_only=True)


class NewWebhook(Webhook):
    """The webhook as created: the only time its signing secret is shown."""

    secret = fields.String(
        dump_only=True,
        metadata={"description": "HMAC-SHA256 key of the X-CSMS-Signature header; shown only now"},
    )


class Delivery(Schema):
    id = fields.Integer()
    event_id = fields.String(data_key="eventId")
    routing_key = fields.String(data_key="routingKey")
    state = fields.String(metadata={"description": "pending, succeeded or failed"})
    attempts = fields.Integer()
    last_status_code = fields.Integer(data_key="lastStatusCode", allow_none=True)
    last_error = fields.String(data_key="lastError", allow_none=True)
    last_duration_ms = fields.Integer(data_key="lastDurationMs", allow_none=True)
    created_at = fields.DateTime(data_key="createdAt")
    last_attempt_at = fields.DateTime(data_key="lastAttemptAt", allow_none=True)
    next_attempt_at = fields.DateTime(data_key="nextAttemptAt", allow_none=True)
    delivered_at = fields.DateTime(data_key="deliveredAt", allow_none=True)


WebhookPage = page_of(Webhook, "WebhookPage")
DeliveryPage = page_of(Delivery, "DeliveryPage")
