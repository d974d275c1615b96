"""Accounts: customers (with a wallet and an id tag) and operators."""

from __future__ import annotations

import functools
import re
import secrets

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from csms.extensions import db
from csms.models import IdTag, Role, User, Wallet
from csms.offload import password_check
from csms.services import id_tags
from csms.services.errors import Conflict, InvalidInput, NotFound

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_ID_TAG = re.compile(r"^[\x21-\x7e]{1,20}$")  # OCPP IdToken: CiString20, printable
PASSWORD_MIN = 8
CURRENCY = re.compile(r"^[A-Z]{3}$")


def normalize_email(email: str) -> str:
    email = email.strip().lower()
    if len(email) > 254 or not _EMAIL.match(email):
        raise InvalidInput(f"invalid email address {email!r}", code="invalid_email")
    return email


def validate_id_tag(id_tag: str) -> str:
    if not _ID_TAG.match(id_tag):
        raise InvalidInput("idTag must be 1 to 20 printable ASCII characters", code="invalid_id_tag")
    return id_tag


def create_user(
    email: str,
    password: str,
    *,
    role: str = Role.CUSTOMER,
    id_tag: str | None = None,
    currency: str = "EUR",
) -> User:
    """Create an account; customers get an empty wallet in `currency`. Commits."""
    email = normalize_email(email)
    if role not in {r.value for r in Role}:
        raise InvalidInput(f"role must be one of {', '.join(r.value for r in Role)}", code="invalid_role")
    if len(password) < PASSWORD_MIN:
        raise InvalidInput(f"password must be at least {PASSWORD_MIN} characters", code="weak_password")
    if not CURRENCY.match(currency):
        raise InvalidInput("currency must be an ISO 4217 code such as EUR", code="invalid_currency")
    if id_tag is not None:
        validate_id_tag(id_tag)
    _refuse_taken(email, id_tag)

    user = User(email=email, password_hash=generate_password_hash(password), role=role)
    try:
        db.session.add(user)
        db.session.flush()
        if role == Role.CUSTOMER:
            db.session.add(Wallet(user_id=user.id, currency=currency))
        if id_tag is not None:
            db.session.add(IdTag(id_tag=id_tag, user_id=user.id))
            id_tags.announce_changed(id_tag)  # no node keeps a stale "Invalid" for it
        db.session.commit()
    except IntegrityError:
        # A registration of the same email (or idTag) committed between the check above and here:
        # the unique constraints decided, so it is the same Conflict a sequential retry would get.
        db.session.rollback()
        _refuse_taken(email, id_tag)
        raise
    return user


def _refuse_taken(email: str, id_tag: str | None) -> None:
    if id_tag is not None and db.session.scalar(select(IdTag.id).where(IdTag.id_tag == id_tag)):
        raise Conflict(f"idTag {id_tag!r} is already issued", code="id_tag_exists")
    if db.session.scalar(select(User.id).where(func.lower(User.email) == email)):
        raise Conflict(f"a user with email {email!r} exists", code="user_exists")


@functools.cache
def _stand_in_hash() -> str:
    """A hash of no one's password, made like every stored one, checked when the email is unknown."""
    return generate_password_hash(secrets.token_urlsafe(16))


def authenticate(email: str, password: str) -> User | None:
    """The user with this email and password, or None. An unknown email costs the same password check
    as a known one, so the time of the answer does not tell whether the account exists. The check runs
    off the gevent hub: a flood of logins must not stall the chargers' replies."""
    user = db.session.scalar(select(User).where(User.email == email.strip().lower()))
    stored = user.password_hash if user else password_check(_stand_in_hash)
    matches = password_check(check_password_hash, stored, password)
    return user if user is not None and matches else None


def set_charging_priority(email: str, priority: int) -> User:
    """The priority of a customer's cars at sites that share by priority (csms.services.load_allocation):
    higher first; committed."""
    if not -1000 <= priority <= 1000:
        raise InvalidInput("priority must be between -1000 and 1000", code="invalid_priority")
    user = db.session.scalar(select(User).where(User.email == normalize_email(email)))
    if user is None:
        raise NotFound(f"no user {email!r}", code="user_not_found")
    user.charging_priority = priority
    db.session.commit()
    return user
