"""Changing id tags, and telling every web node.

Each web node answers Authorize and StartTransaction from its own cache of decisions by idTag
(`csms.services.authorization.IdTagCache`). Every change to an idTag (issued, blocked, its expiry
moved) announces itself in its transaction (csms.cluster.broadcast): every node drops its decision
on the tag when, and only if, the change commits, so a blocked card is refused everywhere at once.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from csms.cluster import broadcast
from csms.extensions import db
from csms.models import IdTag, IdTagStatus
from csms.services.errors import InvalidInput, NotFound

CHANGED = "id-tag"  # the announcement every node's IdTagCache follows; key: the idTag
STATUSES = tuple(status.value for status in IdTagStatus)


def announce_changed(id_tag: str) -> None:
    """Every node forgets its decision on `id_tag` once the current transaction commits."""
    broadcast.announce(CHANGED, id_tag)


def update(id_tag: str, *, status: str | None = None, expiry_date: datetime | None = None) -> IdTag:
    """Set an issued idTag's status and/or expiry date (aware, UTC); commits."""
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(STATUSES)}", code="invalid_status")
    if expiry_date is not None and expiry_date.tzinfo is None:
        raise InvalidInput("expiryDate needs a time zone", code="invalid_expiry_date")
    tag = db.session.scalar(select(IdTag).where(IdTag.id_tag == id_tag))
    if tag is None:
        raise NotFound(f"no idTag {id_tag!r}", code="id_tag_not_found")
    if status is not None:
        tag.status = status
    if expiry_date is not None:
        tag.expiry_date = expiry_date
    announce_changed(id_tag)
    db.session.commit()
    return tag
