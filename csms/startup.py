"""What a production process refuses to start with: a guessable secret key.

`CSMS_SECRET_KEY` signs every bearer token and dashboard session; the default is printed in the
source and a short key can be brute-forced, so either one lets anybody forge an operator's token.
The web process (`csms-web`, each of its `--processes`) and the worker (`dramatiq csms.worker
actors`) exit with status 2 and say why; the embedded mode (one process on 127.0.0.1 by default,
for trying the CSMS out) keeps the default.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from csms.config import Config

MIN_SECRET_LENGTH = 32


def unsafe_secret(config: dict[str, Any]) -> str | None:
    """Why the configured secret key is unsafe, or None."""
    secret = config["SECRET_KEY"]
    if secret == Config.SECRET_KEY:
        return "CSMS_SECRET_KEY is the default, printed in the source"
    if len(secret) < MIN_SECRET_LENGTH:
        return f"CSMS_SECRET_KEY has {len(secret)} characters; at least {MIN_SECRET_LENGTH} are needed"
    return None


def refuse_unsafe_production(config: dict[str, Any], program: str) -> None:
    """Exit (status 2) when a production-mode process would sign tokens with a guessable key."""
    if not config.get("RABBITMQ_URL"):
        return
    reason = unsafe_secret(config)
    if reason:
        print(
            f"{program}: refusing to start in production mode: {reason}, so anybody could forge "
            "tokens. Set a random one, e.g. CSMS_SECRET_KEY=$(python3 -c 'import secrets; "
            "print(secrets.token_hex(32))'), the same on every web node and worker.",
            file=sys.stderr,
        )
        raise SystemExit(2)


def refuse_flask_run() -> None:
    """`flask run` serves the app with Werkzeug's development server: no gevent, no OCPP gateway, no
    background work. Refuse it, pointing at the commands that serve the CSMS."""
    context = click.get_current_context(silent=True)
    if context is not None and context.info_name == "run" and context.parent is not None:
        print(
            "flask run: not supported: it would start no OCPP gateway, hand-off or worker. "
            "Use `make run` (embedded mode) or `csms-web` / `python wsgi.py`.",
            file=sys.stderr,
        )
        raise SystemExit(2)
