"""Files the CSMS keeps in its database so that every web node can serve them: firmware images an
operator uploads (fetched by chargers, UpdateFirmware) and diagnostics files chargers upload
(GetDiagnostics). A file's URL carries an unguessable token: chargers cannot present a bearer token."""

from __future__ import annotations

import hashlib
import re
import secrets

from sqlalchemy import select

from csms.extensions import db
from csms.models import StoredFile
from csms.services.errors import InvalidInput, NotFound

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(name: str | None, default: str) -> str:
    """A file name fit for a URL path segment and a Content-Disposition header."""
    cleaned = _UNSAFE.sub("_", (name or "").rsplit("/", 1)[-1]).strip("._")[:200]
    return cleaned or default


def store(
    kind: str, filename: str, content_type: str | None, data: bytes, uploaded_by: int | None
) -> StoredFile:
    """Keep a file (the caller commits)."""
    if not data:
        raise InvalidInput("the file is empty", code="empty_file")
    stored = StoredFile(
        token=secrets.token_urlsafe(32),
        kind=kind,
        filename=safe_name(filename, f"{kind}.bin"),
        content_type=(content_type or "application/octet-stream")[:100],
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        data=data,
        uploaded_by=uploaded_by,
    )
    db.session.add(stored)
    db.session.flush()
    return stored


def by_token(kind: str, token: str) -> StoredFile:
    found = db.session.scalar(select(StoredFile).where(StoredFile.kind == kind, StoredFile.token == token))
    if found is None:
        raise NotFound("no such file", code="file_not_found")
    return found


def by_id(kind: str, file_id: int) -> StoredFile:
    found = db.session.get(StoredFile, file_id) if 0 < file_id < 2**31 else None
    if found is None or found.kind != kind:
        raise NotFound(f"no {kind} file {file_id}", code="file_not_found")
    return found


def firmware_url(base_url: str, stored: StoredFile) -> str:
    return f"{base_url.rstrip('/')}/files/firmware/{stored.token}/{stored.filename}"


def diagnostics_location(base_url: str, upload_token: str) -> str:
    return f"{base_url.rstrip('/')}/files/diagnostics/{upload_token}/"
