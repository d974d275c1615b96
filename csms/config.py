"""Configuration: defaults on `Config`, overridden by `CSMS_*` environment variables.

Tests and embedders pass a dict to `create_app(config)` that wins over both. Every setting here is
listed in the README's configuration table with its default.
"""

from __future__ import annotations

import os
import socket
from decimal import Decimal, InvalidOperation
from typing import Any


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _at_least(cast: Any, minimum: float) -> Any:
    """`cast`, refusing values below `minimum` (a negative rate would be a typo, not a setting)."""

    def checked(value: str) -> Any:
        number = cast(value)
        if not number >= minimum:  # NaN too
            raise ValueError(f"must be at least {minimum}")
        return number

    return checked


def _one_of(*choices: str) -> Any:
    def checked(value: str) -> str:
        value = value.strip().lower()
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value

    return checked


def _money(value: str) -> int:
    """ "20.00" → 2000 minor units: a positive amount with at most two decimals."""
    try:
        amount = Decimal(value.strip())
    except InvalidOperation:
        raise ValueError(f"not an amount: {value!r}") from None
    if not amount.is_finite() or amount <= 0 or amount != amount.quantize(Decimal("0.01")):
        raise ValueError(f"not a positive amount with at most two decimals: {value!r}")
    return int(amount * 100)


def _money_or_zero(value: str) -> int:
    """ "5.00" → 500 minor units, and "0" → 0: an amount that may be nothing."""
    return 0 if value.strip() in {"0", "0.0", "0.00"} else _money(value)


def _payment_provider(value: str) -> str:
    """A shipped provider's name, or an import path `package.module:Class` (csms.services.payments)."""
    name = value.strip()
    module, _, cls = name.partition(":")
    if name in {"development", "stripe"} or (module and cls.isidentifier()):
        return name
    raise ValueError("must be development, stripe or package.module:Class")


def normalize_database_url(url: str) -> str:
    """Map `postgres://` and `postgresql://` to psycopg 3, the driver that cooperates with gevent."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class Config:
    """Defaults for every setting; the embedded mode needs none of them set."""

    DATABASE_URL: str | None = None  # None: SQLite file in the instance folder (embedded mode)
    RABBITMQ_URL: str | None = None  # None: in-process Dramatiq worker (embedded mode)
    HOST = "127.0.0.1"
    PORT = 8080
    SECRET_KEY = "dev-only-secret-change-it-in-production"
    NODE_ID = socket.gethostname()
    WEB_PROCESSES = 1  # `csms-web` processes on the port, each a node (csms.web_processes)
    HEARTBEAT_INTERVAL = 300
    CALL_TIMEOUT = 30.0
    LOAD_CALL_TIMEOUT = 5.0  # seconds a charger has to answer a load profile; then counted at its last
    MAX_FRAME_BYTES = 65536
    AUTO_REGISTER = False
    WORKER_THREADS = 4
    SQL_ECHO = False
    DB_POOL_SIZE = 20  # PostgreSQL connections a process keeps open
    DB_MAX_OVERFLOW = 30  # and may open beyond that under a burst (reconnect storms)
    HEALTH_CACHE_SECONDS = 2.0
    TLS_CERT: str | None = None
    TLS_KEY: str | None = None
    INPROCESS_WORKER = True
    INSTANCE_PATH: str | None = None  # None: `instance/` beside the `csms` package
    CURRENCY = "EUR"  # wallets of new customers
    CONFIRM_TIMEOUT = 5.0  # seconds to wait for RabbitMQ's publisher confirm before using the outbox
    HANDOFF_LINGER = 0.02  # seconds an exchange waits for others to share its RabbitMQ message
    HANDOFF_BATCH = 200  # at most this many exchanges in one RabbitMQ message
    GC_FULL_SECONDS = 300.0  # web process: one full garbage collection per period (see csms.gc_policy)
    PING_INTERVAL = 30  # WebSocket ping every N seconds; no pong by the next ping closes the connection
    AUTH_CACHE_SECONDS = 60.0  # how long an idTag or charger-key decision is reused
    BOOT_CONFIGURATION = "MeterValueSampleInterval=60"  # pushed with ChangeConfiguration after boot
    PENDING_INTERVAL = 60  # BootNotification retry interval for Pending/Rejected chargers
    TOKEN_TTL_SECONDS = 12 * 3600  # lifetime of bearer tokens
    PAYMENT_PROVIDER: str | None = None  # None: "development" in embedded mode, none in production
    DISPATCH_INTERVAL = 1.0  # seconds between sweeps of the command queue (csms.ocpp.command_delivery)
    QUEUE_BOOT_WAIT = 5.0  # a reconnected charger silent this long gets its queued commands unbooted
    OFFLINE_ALERT_MINUTES = 15  # the dashboard warns of chargers silent for longer
    DASHBOARD_SESSION_SECONDS = 12 * 3600  # a dashboard sign-in lasts this long
    SECURE_COOKIES: bool | None = None  # None: Secure cookies when the process serves TLS itself
    CORS_ORIGINS = ""  # comma-separated origins allowed to call the REST API and Socket.IO
    CHARGER_RATE = 100.0  # messages a second one connection is served, past its burst (0: no limit)
    CHARGER_BURST = 200  # messages a connection may send at once before it is paced
    UNPLANNED_HOLD = 2000  # minor units held from a tag owner's wallet for a start outside an app session
    TRUSTED_PROXIES = ""  # addresses/networks whose X-Forwarded-For is believed (csms.proxies)
    LOGIN_FAILURES_PER_ADDRESS = 100  # failed logins from one address per 15 minutes, then 429
    PUBLIC_URL: str | None = None  # chargers' way to this CSMS over HTTP (file URLs); None: the request's
    UPLOAD_MAX_BYTES = 32 * 1024 * 1024  # a firmware image or diagnostics file (csms.api.operations)
    REGISTRATION = "open"  # open: anyone registers as a customer; closed: operators create accounts
    MIN_BALANCE = (
        0  # minor units (env: "5.00"): a prepaid tag owner with less available is refused at Authorize
    )
    SESSION_SAMPLE_INTERVAL = 10  # MeterValueSampleInterval (s) set on a charger for an app session
    BUDGET_MARGIN_SECONDS = 30.0  # a prepaid session is stopped this long before its budget is spent
    STRIPE_API_KEY: str | None = None  # the Stripe secret key (CSMS_PAYMENT_PROVIDER=stripe)
    STRIPE_WEBHOOK_SECRET: str | None = None  # set: POST /api/payments/stripe/webhook is served
    STRIPE_API_BASE: str | None = None  # None: Stripe's own API; a stand-in's URL in tests
    OPERATOR_NAME = "CSMS operator"  # printed on receipts
    OPERATOR_ADDRESS = ""
    OPERATOR_TAX_ID = ""
    RECEIPT_PREFIX = "R"  # receipt numbers read R-000001, R-000002, ...
    # The outside world (README "Integration and operations")
    LOG_FORMAT = "text"  # text | json (one JSON object per line)
    METRICS_TOKEN = ""  # when set, GET /metrics needs `Authorization: Bearer <token>`
    EVENTS_RETENTION_HOURS = 6.0  # published integration events are kept this long (de-duplication window)
    EVENTS_SWEEP_INTERVAL = 15.0  # seconds between a worker's sweeps for events and deliveries left behind
    WEBHOOK_RETRY_BASE = 5.0  # seconds before a failed delivery's first retry; doubled each time, max 1 h
    WEBHOOK_DISABLE_AFTER = 86400.0  # seconds of failures without a success before a webhook is disabled
    WEBHOOK_TIMEOUT = 5.0  # connect and read timeout of one delivery attempt
    WEBHOOK_ALLOW_PRIVATE = False  # may webhook URLs resolve to loopback/private/link-local addresses?
    WEBHOOK_LOG_DAYS = 7.0  # finished deliveries are listed this long


_CASTS: dict[str, Any] = {
    "PORT": int,
    "UPLOAD_MAX_BYTES": _at_least(int, 1),
    "WEB_PROCESSES": _at_least(int, 1),
    "HEARTBEAT_INTERVAL": int,
    "CALL_TIMEOUT": float,
    "LOAD_CALL_TIMEOUT": _at_least(float, 0.1),
    "MAX_FRAME_BYTES": int,
    "AUTO_REGISTER": _bool,
    "WORKER_THREADS": int,
    "SQL_ECHO": _bool,
    "DB_POOL_SIZE": int,
    "DB_MAX_OVERFLOW": int,
    "HEALTH_CACHE_SECONDS": float,
    "INPROCESS_WORKER": _bool,
    "CONFIRM_TIMEOUT": float,
    "HANDOFF_LINGER": float,
    "HANDOFF_BATCH": int,
    "GC_FULL_SECONDS": float,
    "PING_INTERVAL": int,
    "AUTH_CACHE_SECONDS": float,
    "PENDING_INTERVAL": int,
    "DISPATCH_INTERVAL": _at_least(float, 0.05),
    "QUEUE_BOOT_WAIT": _at_least(float, 0),
    "TOKEN_TTL_SECONDS": int,
    "OFFLINE_ALERT_MINUTES": int,
    "DASHBOARD_SESSION_SECONDS": int,
    "SECURE_COOKIES": _bool,
    "CHARGER_RATE": _at_least(float, 0),
    "CHARGER_BURST": _at_least(int, 1),
    "UNPLANNED_HOLD": _money,
    "LOGIN_FAILURES_PER_ADDRESS": int,
    "REGISTRATION": _one_of("open", "closed"),
    "MIN_BALANCE": _money_or_zero,
    "PAYMENT_PROVIDER": _payment_provider,
    "SESSION_SAMPLE_INTERVAL": _at_least(int, 1),
    "BUDGET_MARGIN_SECONDS": _at_least(float, 0),
    "LOG_FORMAT": _one_of("text", "json"),
    "EVENTS_RETENTION_HOURS": _at_least(float, 0),
    "EVENTS_SWEEP_INTERVAL": _at_least(float, 0.1),
    "WEBHOOK_RETRY_BASE": _at_least(float, 0.01),
    "WEBHOOK_DISABLE_AFTER": _at_least(float, 1),
    "WEBHOOK_TIMEOUT": _at_least(float, 0.1),
    "WEBHOOK_ALLOW_PRIVATE": _bool,
    "WEBHOOK_LOG_DAYS": _at_least(float, 0),
}


# The Node system this CSMS replaces was configured by these variables; each means a `CSMS_` one here
# (its WebSocket port is the CSMS's one port: chargers, REST and Socket.IO share it).
LEGACY_SETTINGS = {
    "RABBITMQ_URL": "CSMS_RABBITMQ_URL",
    "DATABASE_URL": "CSMS_DATABASE_URL",
    "PORT": "CSMS_PORT",
    "WEBSOCKET_PORT": "CSMS_PORT",
}


class LegacySettings(ValueError):
    """A deployment of the replaced system, unconverted: started as it is, the process would ignore
    its broker and database and run in embedded mode on SQLite, losing nothing loudly but serving
    nobody; it refuses to start instead."""


def refuse_legacy_settings(environ: dict[str, str] | None = None) -> None:
    """Raise `LegacySettings`, naming the `CSMS_` variable to set, when a variable of the replaced
    system is set and its counterpart is not."""
    environ = os.environ if environ is None else environ
    unconverted = [
        (old, new) for old, new in LEGACY_SETTINGS.items() if environ.get(old) and new not in environ
    ]
    if unconverted:
        lines = "; ".join(f"{old} is set but {new} is not: set {new}" for old, new in unconverted)
        raise LegacySettings(
            f"settings of the replaced Node system found ({lines}). This CSMS reads only CSMS_ "
            "variables and would otherwise start in embedded mode; see the README, "
            '"Migrating from the Node system".'
        )


def settings_names() -> list[str]:
    return [name for name in vars(Config) if name.isupper()]


def load(overrides: dict[str, Any] | None = None, environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Resolve every setting: class default, then `CSMS_<NAME>` from the environment, then overrides.

    A malformed environment value raises `ValueError` naming the variable, so a typo in a deployment
    fails at start-up instead of running with a surprising default.
    """
    environ = os.environ if environ is None else environ
    resolved: dict[str, Any] = {}
    for name in settings_names():
        value = getattr(Config, name)
        raw = environ.get(f"CSMS_{name}")
        # An empty value unsets an optional setting (CSMS_RABBITMQ_URL= means embedded mode), and is
        # a value like any other for the rest (CSMS_BOOT_CONFIGURATION= pushes nothing).
        if raw is not None and not (raw == "" and (value is None or name in _CASTS)):
            cast = _CASTS.get(name, str)
            try:
                value = cast(raw)
            except ValueError as exc:
                raise ValueError(f"CSMS_{name}={raw!r}: {exc}") from exc
        resolved[name] = value
    resolved.update(overrides or {})
    return resolved
