"""Who is looking at the dashboard: the operator signed in to this browser session, if any.

The session cookie holds only the user's id; each request loads the account again, so an operator
removed, disabled or demoted loses the dashboard at their next click, not when the cookie expires.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from flask import abort, g, redirect, request, session, url_for

from csms.extensions import db
from csms.models import Role, User


def sign_in(user: User) -> None:
    session.clear()  # no state from before the sign-in survives it
    session.permanent = True
    session["user_id"] = user.id


def sign_out() -> None:
    session.clear()


def current_user() -> User | None:
    user_id = session.get("user_id")
    user = db.session.get(User, user_id) if isinstance(user_id, int) else None
    return user if user is not None and user.disabled_at is None else None


def operator_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Anonymous visitors go to the sign-in page; a signed-in customer gets 403."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        user = current_user()
        if user is None:
            return redirect(url_for("dashboard.login", next=request.full_path.rstrip("?")))
        if user.role != Role.OPERATOR:
            abort(403)
        g.operator = user
        return view(*args, **kwargs)

    return wrapped
