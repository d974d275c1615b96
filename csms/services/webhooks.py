"""Operators' webhooks: registration, which events each one gets, signed delivery and its retries.

A delivery is one event for one webhook. It is attempted by an actor (`actors.integration`) on a
queue of its own, with short timeouts, so a slow or dead endpoint never holds back the pipeline.
Each attempt claims the delivery by its attempt number (a duplicate message loses the claim), posts
outside any database transaction, then records the outcome. A failed attempt is tried again after
`WEBHOOK_RETRY_BASE` seconds, doubling up to an hour; a webhook whose deliveries have failed without
a success for `WEBHOOK_DISABLE_AFTER` seconds is disabled (and shows why), and a delivery is given
up once that old.

Signature: `X-CSMS-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
import secrets
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import urllib3
from sqlalchemy import delete, select, update

from csms import metrics
from csms.extensions import db
from csms.models import IntegrationEvent, Webhook, WebhookDelivery
from csms.services import events
from csms.services.errors import InvalidInput, NotFound
from csms.services.sql import insert_ignoring_conflicts

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-CSMS-Signature"
MAX_RETRY_DELAY = 3600.0
_PATTERN = re.compile(r"^(\*|#|[a-z0-9_-]+)(\.(\*|#|[a-z0-9_-]+))*$")
_http = urllib3.PoolManager(num_pools=20, maxsize=4, retries=False)


@dataclass(frozen=True)
class Settings:
    retry_base: float  # seconds before the first retry; doubled each time, at most an hour
    disable_after: float  # seconds of failures without a success before a webhook is disabled
    allow_private: bool  # may URLs resolve to loopback, private or link-local addresses?
    timeout: float  # connect and read timeout of one attempt

    @classmethod
    def of(cls, config: dict[str, Any]) -> Settings:
        return cls(
            config["WEBHOOK_RETRY_BASE"],
            config["WEBHOOK_DISABLE_AFTER"],
            config["WEBHOOK_ALLOW_PRIVATE"],
            config["WEBHOOK_TIMEOUT"],
        )


# Registration -----------------------------------------------------------------------------------


def validate_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("a webhook URL must be http:// or https:// with a host", code="invalid_url")
    if parts.username or parts.password:
        raise InvalidInput(
            "a webhook URL must not carry credentials; the signature authenticates", code="invalid_url"
        )
    return url


def validate_patterns(patterns: list[str]) -> list[str]:
    bad = [p for p in patterns if not _PATTERN.match(p)]
    if bad or not patterns:
        raise InvalidInput(
            "events are routing-key patterns such as notification.# or cms.*.created",
            code="invalid_events",
            details={"events": bad},
        )
    return list(dict.fromkeys(patterns))


def create(url: str, patterns: list[str], description: str | None, user_id: int | None) -> Webhook:
    """Register a webhook with a new secret (readable on the returned object, shown once)."""
    webhook = Webhook(
        url=validate_url(url),
        events=validate_patterns(patterns),
        description=description,
        secret="whsec_" + secrets.token_hex(24),
        created_by=user_id,
    )
    db.session.add(webhook)
    db.session.commit()
    return webhook


def get(webhook_id: int) -> Webhook:
    webhook = db.session.get(Webhook, webhook_id) if 0 < webhook_id < 2**31 else None
    if webhook is None:
        raise NotFound(f"no webhook {webhook_id}", code="webhook_not_found")
    return webhook


def update_webhook(webhook_id: int, changes: dict[str, Any]) -> Webhook:
    """Change url, events, description or enabled; enabling again forgets the failures."""
    webhook = get(webhook_id)
    if "url" in changes:
        webhook.url = validate_url(changes["url"])
    if "events" in changes:
        webhook.events = validate_patterns(changes["events"])
    if "description" in changes:
        webhook.description = changes["description"]
    if changes.get("enabled") is True and not webhook.enabled:
        webhook.enabled, webhook.disabled_reason, webhook.disabled_at = True, None, None
        webhook.failing_since = None
    elif changes.get("enabled") is False and webhook.enabled:
        webhook.enabled, webhook.disabled_reason = False, "disabled by an operator"
        webhook.disabled_at = datetime.now(UTC)
    webhook.updated_at = datetime.now(UTC)
    db.session.commit()
    return webhook


def remove(webhook_id: int) -> None:
    db.session.delete(get(webhook_id))
    db.session.commit()


# Fan-out ------------------------------------------------------------------------------------------


def queue_deliveries(published: list[IntegrationEvent]) -> list[int]:
    """Add a delivery for each enabled webhook whose patterns match each event (in the caller's
    transaction); returns the new deliveries' ids."""
    hooks = list(db.session.scalars(select(Webhook).where(Webhook.enabled.is_(True))))
    if not hooks or not published:
        return []
    now = datetime.now(UTC)
    rows = [
        {
            "webhook_id": hook.id,
            "event_id": event.event_id,
            "routing_key": event.routing_key,
            "body": event.body,
            "state": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for event in published
        for hook in hooks
        if any(events.matches(pattern, event.routing_key) for pattern in hook.events)
    ]
    if not rows:
        return []
    insert_ignoring_conflicts(db.session, WebhookDelivery, rows, ["webhook_id", "event_id"], counted=False)
    query = select(WebhookDelivery.id).where(
        WebhookDelivery.event_id.in_({row["event_id"] for row in rows}),
        WebhookDelivery.attempts == 0,
        WebhookDelivery.state == "pending",
    )
    return list(db.session.scalars(query))


def overdue(grace: timedelta, limit: int = 500) -> list[tuple[int, int]]:
    """Pending deliveries whose next attempt is `grace` late: their message was lost (a worker
    died, RabbitMQ refused the send). `(id, attempts)` pairs to send again."""
    cutoff = datetime.now(UTC) - grace
    query = (
        select(WebhookDelivery.id, WebhookDelivery.attempts)
        .where(WebhookDelivery.state == "pending", WebhookDelivery.next_attempt_at < cutoff)
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
    )
    return [(row.id, row.attempts) for row in db.session.execute(query)]


def purge_log(age: timedelta) -> int:
    """Forget finished deliveries scheduled more than `age` ago (the delivery log's horizon)."""
    cutoff = datetime.now(UTC) - age
    result = db.session.execute(
        delete(WebhookDelivery).where(
            WebhookDelivery.state.in_(("succeeded", "failed")), WebhookDelivery.next_attempt_at < cutoff
        )
    )
    return result.rowcount or 0


# Delivery ----------------------------------------------------------------------------------------


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The `X-CSMS-Signature` value for `body` sent at `timestamp` (unix seconds)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(
    secret: str, header: str, body: bytes, *, tolerance: float = 300, now: float | None = None
) -> bool:
    """What a receiver does: the signature matches and its timestamp is recent (no replays)."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
    except (ValueError, KeyError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), f"t={timestamp},v1={fields.get('v1', '')}")


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def attempt(delivery_id: int, attempt_number: int, settings: Settings) -> float | None:
    """Make attempt `attempt_number` (0 for the first) of a delivery; returns the seconds until the
    next attempt when it failed and will be retried, else None."""
    claimed = _claim(delivery_id, attempt_number)
    if claimed is None:
        return None
    webhook_id, url, secret, body, routing_key, event_id = claimed
    outcome = post(url, secret, body, routing_key, event_id, delivery_id, settings)
    return _record(delivery_id, webhook_id, outcome, settings)


def _claim(delivery_id: int, attempt_number: int) -> tuple | None:
    """Count the attempt (committed) if it is the one due; a late duplicate message finds it taken."""
    claimed = db.session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.attempts == attempt_number,
            WebhookDelivery.state == "pending",
        )
        .values(attempts=attempt_number + 1, last_attempt_at=datetime.now(UTC))
    ).rowcount
    if not claimed:
        db.session.rollback()
        return None
    row = db.session.execute(
        select(
            Webhook.id,
            Webhook.url,
            Webhook.secret,
            Webhook.enabled,
            WebhookDelivery.body,
            WebhookDelivery.routing_key,
            WebhookDelivery.event_id,
        )
        .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
        .where(WebhookDelivery.id == delivery_id)
    ).one()
    if not row.enabled:
        db.session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id)
            .values(state="failed", last_error="the webhook is disabled")
        )
        db.session.commit()
        return None
    db.session.commit()
    return row.id, row.url, row.secret, row.body, row.routing_key, row.event_id


def post(
    url: str, secret: str, body: str, routing_key: str, event_id: str, delivery_id: int, settings: Settings
) -> Outcome:
    """POST one signed delivery; never raises. Redirects are not followed."""
    data = body.encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "csms-webhooks/1",
        "X-CSMS-Event": routing_key,
        "X-CSMS-Event-Id": event_id,
        "X-CSMS-Delivery": str(delivery_id),
        SIGNATURE_HEADER: sign(secret, int(time.time()), data),
    }
    started = time.monotonic()
    try:
        refusal = _refused_address(url, settings.allow_private)
        if refusal:
            return Outcome(None, refusal, 0)
        response = _http.request(
            "POST",
            url,
            body=data,
            headers=headers,
            timeout=urllib3.Timeout(connect=settings.timeout, read=settings.timeout),
            redirect=False,
            preload_content=False,
        )
        response.drain_conn()
        response.release_conn()
        status, error = response.status, None if 200 <= response.status < 300 else f"HTTP {response.status}"
    except Exception as exc:  # urllib3 raises many types for "could not reach it"
        status, error = None, f"{type(exc).__name__}: {exc}"[:500]
    return Outcome(status, error, int((time.monotonic() - started) * 1000))


def _refused_address(url: str, allow_private: bool) -> str | None:
    """Why the URL's host must not be called, if it must not: a minimal guard against making the
    CSMS call its own network (SSRF). Checked at each attempt, on every address the name has."""
    if allow_private:
        return None
    host = urlsplit(url).hostname or ""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        return f"cannot resolve {host}: {exc}"
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if not address.is_global or address.is_multicast:
            return f"{host} resolves to {address}, a non-public address (CSMS_WEBHOOK_ALLOW_PRIVATE)"
    return None


def _record(delivery_id: int, webhook_id: int, outcome: Outcome, settings: Settings) -> float | None:
    now = datetime.now(UTC)
    delivery = db.session.get(WebhookDelivery, delivery_id, with_for_update=True)
    webhook = db.session.get(Webhook, webhook_id, with_for_update=True)
    if delivery is None or webhook is None:  # deleted meanwhile
        db.session.rollback()
        return None
    delivery.last_status_code = outcome.status_code
    delivery.last_error = outcome.error
    delivery.last_duration_ms = outcome.duration_ms
    retry_in = None
    metrics.WEBHOOK_DELIVERIES.labels("succeeded" if outcome.succeeded else "failed").inc()
    if outcome.succeeded:
        delivery.state, delivery.delivered_at = "succeeded", now
        webhook.failing_since = None
    else:
        webhook.failing_since = webhook.failing_since or now
        failing_for = (now - webhook.failing_since).total_seconds()
        if webhook.enabled and failing_for >= settings.disable_after:
            webhook.enabled, webhook.disabled_at = False, now
            webhook.disabled_reason = f"failing for {failing_for / 3600:.1f} hours: {outcome.error}"[:255]
            log.error("webhook %s disabled: %s", webhook.id, webhook.disabled_reason)
        age = (now - delivery.created_at).total_seconds()
        if not webhook.enabled or age >= settings.disable_after:
            delivery.state = "failed"
        else:
            retry_in = min(settings.retry_base * 2 ** (delivery.attempts - 1), MAX_RETRY_DELAY)
            delivery.next_attempt_at = now + timedelta(seconds=retry_in)
        log.warning(
            "webhook %s delivery %s (%s, event %s) failed on attempt %d: %s%s",
            webhook.id,
            delivery.id,
            delivery.routing_key,
            delivery.event_id,
            delivery.attempts,
            outcome.error,
            f"; retrying in {retry_in:g} s" if retry_in is not None else "; given up",
        )
    db.session.commit()
    return retry_in
