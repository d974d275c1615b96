"""Accounts and tokens: register as a customer, log in for a bearer token."""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta

from flask import current_app, request
from flask_smorest import Blueprint

from csms.api.login_limiter import LoginLimiter
from csms.api.security import Forbidden, Unauthorized
from csms.models import User
from csms.schemas.auth import Credentials, Registration, Token
from csms.schemas.common import Error
from csms.services import tokens, users

log = logging.getLogger(__name__)
bp = Blueprint("auth", __name__, url_prefix="/api/auth", description="Accounts and bearer tokens")


def _token_for(user: User) -> dict:
    ttl = current_app.config["TOKEN_TTL_SECONDS"]
    token = tokens.issue(
        tokens.Identity(user.id, user.role), current_app.config["SECRET_KEY"], timedelta(seconds=ttl)
    )
    return {
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": ttl,
        "user_id": user.id,
        "role": user.role,
    }


@bp.post("/register")
@bp.arguments(Registration)
@bp.response(201, Token)
@bp.alt_response(403, schema=Error, description="registration is closed (CSMS_REGISTRATION=closed)")
@bp.alt_response(409, schema=Error, description="email already registered")
def register(body):
    """Create a customer account (with a wallet and an app idTag) and return its token. With
    `CSMS_REGISTRATION=closed` only operators create accounts (403 `registration_closed`)."""
    if current_app.config["REGISTRATION"] == "closed":
        raise Forbidden("registration is closed: ask an operator for an account", code="registration_closed")
    id_tag = f"APP-{secrets.token_hex(6).upper()}"
    user = users.create_user(
        body["email"],
        body["password"],
        role="customer",
        id_tag=id_tag,
        currency=current_app.config["CURRENCY"],
    )
    return _token_for(user)


@bp.post("/login")
@bp.arguments(Credentials)
@bp.response(200, Token)
@bp.alt_response(401, schema=Error, description="wrong email or password")
@bp.alt_response(403, schema=Error, description="the account is disabled")
@bp.alt_response(429, schema=Error, description="too many failed logins from this address")
def login(body):
    """Exchange email and password for a bearer token. After 5 failures for one email from one
    address, that pair waits 1, 2, 4... seconds (at most 300) between attempts; an address with
    `CSMS_LOGIN_FAILURES_PER_ADDRESS` failures in 15 minutes waits for the rest of them."""
    return _token_for(authenticate(body["email"], body["password"]))


def authenticate(email: str, password: str) -> User:
    """The account these credentials open, through the login limiter: the REST login and the
    dashboard's sign-in share it. Raises `Unauthorized` or `TooManyRequests`."""
    email = email.strip().lower()
    address = request.remote_addr or ""
    limiter: LoginLimiter = current_app.extensions["login_limiter"]
    limiter.check(address, email)
    user = users.authenticate(email, password)
    if user is None:
        limiter.failed(address, email)
        log.warning("failed login for %s from %s", email[:254], address, extra={"email": email[:254]})
        raise Unauthorized("wrong email or password", code="invalid_credentials")
    limiter.succeeded(address, email)
    if user.disabled_at is not None:  # told only to whoever knows the password
        raise users.AccountDisabled("this account is disabled", code="account_disabled")
    return user
