"""Bearer-token authentication and role checks for the REST views."""

from __future__ import annotations

import functools

from flask import current_app, g, request

from csms.services import tokens, users
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
    """The identity of the request's token, as the account is now: a disabled account's tokens
    stop working at once (403 `account_disabled`) and the role is the account's current one."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("a bearer token is required")
    identity = tokens.verify(token.strip(), current_app.config["SECRET_KEY"])
    return tokens.Identity(identity.user_id, users.active(identity.user_id).role)


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
