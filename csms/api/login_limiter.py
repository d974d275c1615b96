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

Both counts are kept in `ExpiringCache`s: however many addresses and emails arrive, the limiter holds
at most `max_entries` of each (a few MB), each for at most `window` seconds after its last failure;
pushing a pair out takes that many failed logins, each paying a password check. The state is
per web node: `LoginLimiter` is the whole interface the views use, so a cluster-wide store can take
the place of `LocalLoginLimiter` without touching them.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections.abc import Callable
from typing import Protocol

from csms.api.security import TooManyRequests
from csms.expiring_cache import ExpiringCache


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
            self._refuse(window_end - now)
        failures, last = self._pairs.get((address, account), (0, now))
        if failures >= self.free_failures:
            delay = min(2.0 ** (failures - self.free_failures), self.max_delay)
            if now < last + delay:
                self._refuse(last + delay - now)

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

    @staticmethod
    def _refuse(seconds: float) -> None:
        retry = max(1, math.ceil(seconds))
        raise TooManyRequests(f"too many failed logins; retry in {retry}s", details={"retryAfter": retry})
