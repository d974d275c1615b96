"""Accounts: customers (with a wallet and an id tag) and operators."""

from __future__ import annotations

import functools
import re
import secrets
from datetime import UTC, datetime

from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from csms.extensions import db
from csms.models import AccountPolicy, IdTag, Role, User, Wallet
from csms.offload import password_check
from csms.services import id_tags, wallet
from csms.services.errors import Conflict, InvalidInput, NotFound, ServiceError
from csms.services.tokens import InvalidToken

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PASSWORD_MIN = 8
CURRENCY = re.compile(r"^[A-Z]{3}$")


def normalize_email(email: str) -> str:
    email = email.strip().lower()
    if len(email) > 254 or not _EMAIL.match(email):
        raise InvalidInput(f"invalid email address {email!r}", code="invalid_email")
    return email


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
        id_tags.validate_id_tag(id_tag)
    _refuse_taken(email, id_tag)

    user = User(email=email, password_hash=generate_password_hash(password), role=role)
    try:
        db.session.add(user)
        db.session.flush()
        if role == Role.CUSTOMER:
            db.session.add(Wallet(user_id=user.id, currency=currency))
        if id_tag is not None:
            db.session.add(IdTag(id_tag=id_tag, user_id=user.id))
            db.session.flush()
            id_tags.announce_tags([id_tag])  # no node keeps a stale "Invalid" for it
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


# --- operators managing accounts ----------------------------------------------------------------


class AccountDisabled(ServiceError):
    status = 403
    code = "account_disabled"


def active(user_id: int) -> User:
    """The account a token names, as it is now: a token of a deleted or disabled account stops
    working at once, and the role is the account's current one (a demoted operator's token does
    not keep the operator's rights)."""
    user = db.session.get(User, user_id) if 0 < user_id < 2**31 else None
    if user is None:
        raise InvalidToken("the token's account no longer exists")
    if user.disabled_at is not None:
        raise AccountDisabled("this account is disabled")
    return user


def search(q: str | None = None, role: str | None = None, disabled: bool | None = None) -> Select:
    """The query for a list of accounts: `q` matches the email; the others filter exactly."""
    query = select(User)
    if q:
        query = query.where(User.email.ilike(f"%{q.strip().lower()}%"))
    if role:
        query = query.where(User.role == role)
    if disabled is not None:
        query = query.where(User.disabled_at.is_not(None) if disabled else User.disabled_at.is_(None))
    return query


def find(key: int | str) -> User:
    """A user by id or email."""
    if isinstance(key, int) or key.isdigit():
        user = db.session.get(User, int(key)) if 0 < int(key) < 2**31 else None
    else:
        user = db.session.scalar(select(User).where(User.email == key.strip().lower()))
    if user is None:
        raise NotFound(f"no user {key}", code="user_not_found")
    return user


def change(
    user: User,
    *,
    role: str | None = None,
    disabled: bool | None = None,
    by: int | None = None,
    currency: str = "EUR",
) -> User:
    """Change an account's role and/or disable (or enable) it; commits. An operator cannot demote or
    disable their own account (`by`), so the last operator cannot lock everyone out by mistake. A
    customer made operator keeps its wallet; an operator made customer gets one if it had none."""
    if role is not None and role not in {r.value for r in Role}:
        raise InvalidInput(f"role must be one of {', '.join(r.value for r in Role)}", code="invalid_role")
    if by is not None and by == user.id and (disabled or (role is not None and role != user.role)):
        raise Conflict("an operator cannot demote or disable their own account", code="own_account")
    if role is not None and role != user.role:
        user.role = role
        if (
            role == Role.CUSTOMER
            and db.session.scalar(select(Wallet.id).where(Wallet.user_id == user.id)) is None
        ):
            db.session.add(Wallet(user_id=user.id, currency=currency))
    if disabled is not None:
        if disabled and user.disabled_at is None:
            user.disabled_at = datetime.now(UTC)
        elif not disabled:
            user.disabled_at = None
    db.session.commit()
    return user


def set_account_policy(email: str, policy: str) -> User:
    """Prepaid or postpaid (csms.models.AccountPolicy); every node's Authorize follows at once. Commits."""
    if policy not in tuple(AccountPolicy):
        raise InvalidInput("policy must be prepaid or postpaid", code="invalid_policy")
    user = find(email)
    user.account_policy = policy
    wallet.announce_balance(user.id)  # the owner's standing at Authorize changes with the policy
    db.session.commit()
    return user


def set_charging_priority(email: str, priority: int) -> User:
    """The priority of a customer's cars at sites that share by priority (csms.services.load_allocation):
    higher first; committed."""
    if not -1000 <= priority <= 1000:
        raise InvalidInput("priority must be between -1000 and 1000", code="invalid_priority")
    user = find(email)
    user.charging_priority = priority
    db.session.commit()
    return user
