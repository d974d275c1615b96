"""Charger authorization keys (OCPP security profile 1): generated, checked, salted and hashed.

PBKDF2-SHA256 with a moderate iteration count: keys are at least 16 characters and those we generate
carry 192 random bits, so stretching adds little, while every reconnect storm of thousands of
chargers pays the verification cost on the web process. The count is stored in each hash, so it can
be raised later without invalidating existing keys. User passwords use Werkzeug's slow scrypt instead.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

from csms.services.errors import InvalidInput

ALGORITHM = "pbkdf2_sha256"
ITERATIONS = 2000
KEY_MIN, KEY_MAX = 16, 40  # BasicAuthPassword bounds of the OCPP security whitepaper
_PRINTABLE = re.compile(r"^[\x21-\x7e]+$")


def generate_key() -> str:
    return secrets.token_urlsafe(24)  # 32 characters, 192 bits


def validate_key(key: str) -> str:
    if not KEY_MIN <= len(key) <= KEY_MAX:
        raise InvalidInput(
            f"authorization key must be {KEY_MIN} to {KEY_MAX} characters, got {len(key)}",
            code="invalid_auth_key",
        )
    if not _PRINTABLE.match(key):
        raise InvalidInput(
            "authorization key must be printable ASCII without spaces", code="invalid_auth_key"
        )
    return key


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def hash_key(key: str, *, iterations: int = ITERATIONS) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", key.encode(), salt, iterations)
    return f"{ALGORITHM}${iterations}${_b64(salt)}${_b64(digest)}"


def verify_key(key: str, stored: str | None) -> bool:
    """Constant-time check of a presented key against a stored hash; False for malformed hashes."""
    if not stored:
        return False
    try:
        algorithm, iterations, salt, digest = stored.split("$")
        if algorithm != ALGORITHM:
            return False
        candidate = hashlib.pbkdf2_hmac("sha256", key.encode(), base64.b64decode(salt), int(iterations))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(candidate, base64.b64decode(digest))
