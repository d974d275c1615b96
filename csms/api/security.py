"""Bearer-token authentication and role checks for the REST views."""

from __future__ import annotations

import functools
import threading
import time
from collections import deque

from flask import current_app, g, request

from csms.services import tokens
from csms.services.errors import ServiceError


class Unauthorized(ServiceError):
    status = 401
    code = "unauthorized"


class Forbidden(ServiceError):
    status = 403
    code = "forbidden"


class TooManyRequests(ServiceError):
    status = 429
    code = "too_many_requests"


def current_identity() -> tokens.Identity:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("a bearer token is required")
    return tokens.verify(token.strip(), current_app.config["SECRET_KEY"])


def requires(*roles: str):
    """The view needs a valid token, and one of `roles` when given; the identity is in `g.identity`."""

    def decorate(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            identity = current_identity()
            if roles and identity.role not in roles:
                raise Forbidden(f"this needs the {' or '.join(roles)} role")
            g.identity = identity
            return view(*args, **kwargs)

        return wrapper

    return decorate


class AttemptLimiter:
    """At most `limit` failed attempts per key within `window` seconds (login: per address and per
    email); successful ones do not count, so a busy app behind one address is not locked out."""

    def __init__(self, limit: int, window: float):
        self.limit = limit
        self.window = window
        self._attempts: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, *keys: str) -> None:
        """Refuse (429) when any key has used up its failed attempts."""
        now = time.monotonic()
        with self._lock:
            for key in keys:
                attempts = self._attempts.get(key)
                while attempts and attempts[0] < now - self.window:
                    attempts.popleft()
                if attempts and len(attempts) >= self.limit:
                    retry = int(attempts[0] + self.window - now) + 1
                    raise TooManyRequests(
                        f"too many attempts; retry in {retry}s", details={"retryAfter": retry}
                    )

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._attempts) > 100_000:
                self._attempts.clear()
            for key in keys:
                self._attempts.setdefault(key, deque()).append(now)
