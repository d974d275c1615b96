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


def _money(value: str) -> int:
    """ "20.00" → 2000 minor units: a positive amount with at most two decimals."""
    try:
        amount = Decimal(value.strip())
    except InvalidOperation:
        raise ValueError(f"not an amount: {value!r}") from None
    if not amount.is_finite() or amount <= 0 or amount != amount.quantize(Decimal("0.01")):
        raise ValueError(f"not a positive amount with at most two decimals: {value!r}")
    return int(amount * 100)


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


_CASTS: dict[str, Any] = {
    "PORT": int,
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
}


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
