"""Login throttling that slows password guessing down without locking an account's owner out.

Failures are counted per sender of one account, (client address, email): after `free_failures` of
them that pair waits 1, 2, 4... seconds (at most `max_delay`) after each further failure before its
next attempt is even checked. Nobody else is slowed down: an owner logging in from another address,
or other accounts from the same address. A success forgets the pair's failures.

An IPv6 sender is its /64, the block one subscriber gets: walking through its own addresses does
not make an attacker somebody else.

One address trying many accounts is bounded by `address_failures`: that many failures within `window`
seconds, and every login from it is refused until the window ends. Only failures count, so a busy
address (a NAT, an office) whose users type their passwords right never gets near it.

`LoginLimiter` is the whole interface the views use, with two stores behind it:

- `LocalLoginLimiter` (embedded mode: one process) keeps both counts in `ExpiringCache`s: however
  many addresses and emails arrive, it holds at most `max_entries` of each (a few MB), each for at
  most `window` seconds after its last failure; pushing a pair out takes that many failed logins,
  each paying a password check.
- `SharedLoginLimiter` (production mode: a cluster of web nodes behind a load balancer) keeps them
  in PostgreSQL (`csms.models.LoginFailure`), so failures sent to different nodes add up as if one
  node had seen them all, and a restarted node forgets nothing. A row is written only by a failed
  login, which paid a password check, and is swept `window` seconds after its last failure.

Both refuse before any password is checked, so a refused attempt costs no scrypt, and both treat
an unknown email exactly like a wrong password (the same reads and writes), so neither tells
whether an account exists.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy import case, delete, literal, select
from sqlalchemy.dialects import postgresql, sqlite

from csms.api.security import TooManyRequests
from csms.expiring_cache import ExpiringCache
from csms.extensions import db
from csms.models import LoginFailure


def sender(address: str) -> str:
    """An IPv4 address as it is; an IPv6 address as its /64."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # ::ffff:192.0.2.1, an IPv4 client of a dual-stack socket
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return address


class LoginLimiter(Protocol):
    def check(self, address: str, account: str) -> None:
        """Raise `TooManyRequests` (with `retryAfter` seconds) if this login may not be tried now."""

    def failed(self, address: str, account: str) -> None:
        """A wrong email or password from `address` for `account`."""

    def succeeded(self, address: str, account: str) -> None:
        """A correct password: the pair's failures are forgotten."""


class LocalLoginLimiter:
    def __init__(
        self,
        *,
        address_failures: int = 100,
        free_failures: int = 5,
        max_delay: float = 300.0,
        window: float = 900.0,
        max_entries: int = 20_000,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.address_failures = address_failures
        self.free_failures = free_failures
        self.max_delay = max_delay
        self.window = window
        self._clock = clock
        # (address, account) -> (failures, time of the last one)
        self._pairs = ExpiringCache(max_entries, window, clock)
        # address -> (failures, end of its window)
        self._addresses = ExpiringCache(max_entries, window, clock)
        self._lock = threading.Lock()

    def check(self, address: str, account: str) -> None:
        address = sender(address)
        now = self._clock()
        failures, window_end = self._addresses.get(address, (0, now))
        if failures >= self.address_failures:
            _refuse(window_end - now)
        failures, last = self._pairs.get((address, account), (0, now))
        if failures >= self.free_failures:
            delay = min(2.0 ** (failures - self.free_failures), self.max_delay)
            if now < last + delay:
                _refuse(last + delay - now)

    def failed(self, address: str, account: str) -> None:
        address = sender(address)
        now = self._clock()
        with self._lock:
            failures, _ = self._pairs.get((address, account), (0, now))
            self._pairs.put((address, account), (failures + 1, now))
            failures, window_end = self._addresses.get(address, (0, now + self.window))
            if not self._addresses.replace(address, (failures + 1, window_end)):
                self._addresses.put(address, (1, window_end))

    def succeeded(self, address: str, account: str) -> None:
        self._pairs.pop((sender(address), account))


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _refuse(seconds: float) -> None:
    retry = max(1, math.ceil(seconds))
    raise TooManyRequests(f"too many failed logins; retry in {retry}s", details={"retryAfter": retry})


class SharedLoginLimiter:
    """The limits of `LocalLoginLimiter`, counted in the database for every node at once.

    It works in the request's database session (one connection per login, however many nodes) and
    commits it when it writes: the login views have nothing else pending. A pair's failures restart
    `window` seconds after its last one; an address's `window` starts at its first failure.
    """

    SWEEP_EVERY = 60.0  # seconds between this node's deletions of lapsed rows

    def __init__(
        self,
        *,
        address_failures: int = 100,
        free_failures: int = 5,
        max_delay: float = 300.0,
        window: float = 900.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.address_failures = address_failures
        self.free_failures = free_failures
        self.max_delay = max_delay
        self.window = timedelta(seconds=window)
        self._clock = clock
        self._swept_at: datetime | None = None

    @staticmethod
    def _keys(address: str, account: str) -> tuple[str, str]:
        """(the address's key, the pair's key): digests, so no typed email is stored."""
        address = sender(address)
        return _digest(f"address\0{address}"), _digest(f"pair\0{address}\0{account}")

    def check(self, address: str, account: str) -> None:
        address_key, pair_key = self._keys(address, account)
        now = self._clock()
        rows = db.session.execute(
            select(
                LoginFailure.key, LoginFailure.failures, LoginFailure.last_failure_at, LoginFailure.expires_at
            ).where(LoginFailure.key.in_((address_key, pair_key)), LoginFailure.expires_at > now)
        ).all()
        counted = {row.key: row for row in rows}
        row = counted.get(address_key)
        if row is not None and row.failures >= self.address_failures:
            _refuse((row.expires_at - now).total_seconds())
        row = counted.get(pair_key)
        if row is not None and row.failures >= self.free_failures:
            delay = timedelta(seconds=min(2.0 ** (row.failures - self.free_failures), self.max_delay))
            if now < row.last_failure_at + delay:
                _refuse((row.last_failure_at + delay - now).total_seconds())

    def failed(self, address: str, account: str) -> None:
        address_key, pair_key = self._keys(address, account)
        now = self._clock()
        self._count(pair_key, now, sliding=True)
        self._count(address_key, now, sliding=False)
        if self._swept_at is None or (now - self._swept_at).total_seconds() >= self.SWEEP_EVERY:
            self._swept_at = now
            db.session.execute(delete(LoginFailure).where(LoginFailure.expires_at <= now))
        db.session.commit()

    def succeeded(self, address: str, account: str) -> None:
        _, pair_key = self._keys(address, account)
        db.session.execute(delete(LoginFailure).where(LoginFailure.key == pair_key))
        db.session.commit()

    def _count(self, key: str, now: datetime, *, sliding: bool) -> None:
        """One more failure under `key`: a lapsed count starts again at 1; a sliding window ends
        `window` after the last failure, a fixed one `window` after the first."""
        table = LoginFailure.__table__
        dialect = postgresql if db.session.get_bind().dialect.name == "postgresql" else sqlite
        ends = literal(now + self.window, table.c.expires_at.type)
        live = table.c.expires_at > literal(now, table.c.expires_at.type)
        statement = dialect.insert(table).values(
            key=key, failures=1, last_failure_at=now, expires_at=now + self.window
        )
        statement = statement.on_conflict_do_update(
            index_elements=["key"],
            set_={
                "failures": case((live, table.c.failures + 1), else_=1),
                "last_failure_at": literal(now, table.c.last_failure_at.type),
                "expires_at": ends if sliding else case((live, table.c.expires_at), else_=ends),
            },
        )
        db.session.execute(statement)
