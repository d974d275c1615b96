"""Cross-origin access: a dashboard or app served from another origin may call the REST API and
connect to Socket.IO when its origin is listed in `CSMS_CORS_ORIGINS`. None is by default; the pages
this process serves itself are same-origin and need no entry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from flask import Flask
from flask_cors import CORS


def parse_origins(text: str) -> list[str]:
    """`https://ops.example.com,http://localhost:3000` → the origins; anything that is not a bare
    scheme://host[:port] fails the start with the offending value."""
    origins = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        parts = urlsplit(item)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path or parts.query:
            raise ValueError(f"CSMS_CORS_ORIGINS: {item!r} is not an origin such as https://ops.example.com")
        origins.append(f"{parts.scheme}://{parts.netloc}".lower())
    return origins


def socketio_origins(origins: list[str]) -> Callable[[str | None, dict[str, Any]], bool]:
    """Socket.IO's origin check: this server's own origin (as the browser saw it), or a listed one."""
    allowed = set(origins)

    def allow(origin: str | None, environ: dict[str, Any]) -> bool:
        if origin is None:
            return True  # not a browser: nothing to protect against
        host = environ.get("HTTP_HOST", "")
        own = {f"{environ.get('wsgi.url_scheme', 'http')}://{host}".lower()}
        return origin.lower() in allowed | own

    return allow


def init_app(app: Flask) -> list[str]:
    origins = parse_origins(app.config["CORS_ORIGINS"])
    if origins:
        CORS(
            app,
            resources={r"/api/*": {"origins": origins}},
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )
    return origins
