"""Bearer tokens for the REST API and Socket.IO: signed JWTs (HS256) that expire."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

from csms.services.errors import ServiceError

ALGORITHM = "HS256"


class InvalidToken(ServiceError):
    status = 401
    code = "invalid_token"


@dataclass(frozen=True)
class Identity:
    user_id: int
    role: str


def issue(identity: Identity, secret: str, ttl: timedelta) -> str:
    now = datetime.now(UTC)
    claims = {"sub": str(identity.user_id), "role": identity.role, "iat": now, "exp": now + ttl}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify(token: str, secret: str) -> Identity:
    """The identity in a valid, unexpired token; `InvalidToken` otherwise (expired, forged, garbled)."""
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["sub", "exp", "role"]}
        )
        return Identity(int(claims["sub"]), str(claims["role"]))
    except jwt.ExpiredSignatureError:
        raise InvalidToken("token expired", code="token_expired") from None
    except (jwt.InvalidTokenError, ValueError):
        raise InvalidToken("invalid token") from None
