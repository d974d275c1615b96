"""The operator's cockpit: server-rendered pages in the web process, live over Socket.IO.

Pages call the same services as the REST API (no second copy of a business rule). Operators sign in
with their account into a session cookie; every form carries a CSRF token. Front-end libraries are
installed from npm by `make` into `static/vendor/` (git-ignored) and served from here, never from a
CDN: control rooms are often offline.
"""

from __future__ import annotations

from flask import Flask
from flask_wtf.csrf import CSRFProtect

csrf = CSRFProtect()


def init_app(app: Flask) -> None:
    app.config.setdefault("WTF_CSRF_CHECK_DEFAULT", False)  # the REST API uses bearer tokens, not cookies
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)  # valid for the session's life
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=_secure_cookies(app),
        SESSION_COOKIE_NAME="csms_session",
        PERMANENT_SESSION_LIFETIME=app.config["DASHBOARD_SESSION_SECONDS"],
    )
    csrf.init_app(app)
    from csms.dashboard import views

    app.register_blueprint(views.bp)


def _secure_cookies(app: Flask) -> bool:
    """Secure cookies when asked, or when this process serves TLS itself (behind a TLS proxy, set
    `CSMS_SECURE_COOKIES=true`)."""
    configured = app.config["SECURE_COOKIES"]
    return bool(app.config["TLS_CERT"]) if configured is None else configured
