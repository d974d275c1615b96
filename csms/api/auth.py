"""Accounts and tokens: register as a customer, log in for a bearer token."""

from __future__ import annotations

import secrets
from datetime import timedelta

from flask import current_app, request
from flask_smorest import Blueprint
from sqlalchemy import select
from werkzeug.security import check_password_hash

from csms.api.security import AttemptLimiter, Unauthorized
from csms.extensions import db
from csms.models import User
from csms.schemas.auth import Credentials, Registration, Token
from csms.schemas.common import Error
from csms.services import tokens, users

bp = Blueprint("auth", __name__, url_prefix="/api/auth", description="Accounts and bearer tokens")
login_attempts = AttemptLimiter(limit=10, window=300)


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
@bp.alt_response(409, schema=Error, description="email already registered")
def register(body):
    """Create a customer account (with a wallet and an app idTag) and return its token."""
    id_tag = f"APP-{secrets.token_hex(6).upper()}"
    user = users.create_user(
        body["email"],
        body["password"],
        role="customer",
        id_tag=id_tag,
        currency=current_app.config["CURRENCY"],
    )
    current_app.extensions["ocpp"].id_tags.invalidate(id_tag)  # no stale "Invalid" for the new tag
    return _token_for(user)


@bp.post("/login")
@bp.arguments(Credentials)
@bp.response(200, Token)
@bp.alt_response(401, schema=Error, description="wrong email or password")
@bp.alt_response(429, schema=Error, description="too many attempts")
def login(body):
    """Exchange email and password for a bearer token (10 failed attempts per 5 minutes per address
    and per email, then 429)."""
    return _token_for(authenticate(body["email"], body["password"]))


def authenticate(email: str, password: str) -> User:
    """The account these credentials open, through the login limiter: the REST login and the
    dashboard's sign-in share it. Raises `Unauthorized` or `TooManyRequests`."""
    email = email.strip().lower()
    keys = (f"ip:{request.remote_addr}", f"email:{email}")
    login_attempts.check(*keys)
    user = db.session.scalar(select(User).where(User.email == email))
    if user is None or not check_password_hash(user.password_hash, password):
        login_attempts.failed(*keys)
        raise Unauthorized("wrong email or password", code="invalid_credentials")
    return user
