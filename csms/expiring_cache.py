"""A small in-process cache bounded in size and in time, for anything keyed by what a client sent.

A cache keyed by chargePointIds, idTags, addresses or emails from the network grows with the
attacker's imagination unless something bounds it: entries here expire `ttl` seconds after they were
stored, and past `max_entries` the oldest go first. Every entry lives for the same `ttl`, so storage
order is expiry order: expired entries are swept from the front on each store, in O(1) each, and the
memory an entry holds is given back within `ttl` whatever the traffic.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

_MISSING = object()


class ExpiringCache:
    def __init__(self, max_entries: int, ttl: float, clock: Callable[[], float] = time.monotonic):
        if max_entries < 1 or ttl < 0:
            raise ValueError("an expiring cache needs max_entries >= 1 and ttl >= 0 (0: keeps nothing)")
        self.max_entries = max_entries
        self.ttl = ttl
        self._clock = clock
        self._entries: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, default: Any = None) -> Any:
        """The value stored under `key` if it has not expired, else `default`."""
        entry = self._entries.get(key, _MISSING)
        if entry is _MISSING or entry[0] <= self._clock():
            return default
        return entry[1]

    def put(self, key: Hashable, value: Any) -> None:
        """Store `value` for `ttl` seconds from now (a stored key starts its time again)."""
        now = self._clock()
        with self._lock:
            self._entries.pop(key, None)
            self._entries[key] = (now + self.ttl, value)
            self._sweep(now)

    def replace(self, key: Hashable, value: Any) -> bool:
        """Change the value of a live entry and keep its expiry; False (nothing stored) if there is none."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] <= self._clock():
                return False
            self._entries[key] = (entry[0], value)
            return True

    def pop(self, key: Hashable) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        """Entries held, expired ones not yet swept included (what the memory is spent on)."""
        return len(self._entries)

    def _sweep(self, now: float) -> None:
        entries = self._entries
        while entries:
            expires, _ = next(iter(entries.values()))
            if expires > now and len(entries) <= self.max_entries:
                return
            entries.popitem(last=False)
