"""Authorization of id tags (OCPP 1.6 Authorize, StartTransaction, StopTransaction).

Charger calls are answered on the hot path, so decisions come from a small in-process cache. A
change to an idTag anywhere in the cluster is announced (csms.services.id_tags) and every node's
cache drops the tag when it commits; `ttl` bounds what a missed announcement could leave behind.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select

from csms.expiring_cache import ExpiringCache
from csms.extensions import db
from csms.models import IdTag, IdTagStatus
from csms.services.bounds import NUL


@dataclass(frozen=True, slots=True)
class IdTagInfo:
    status: str
    expiry_date: datetime | None = None
    parent_id_tag: str | None = None

    def as_ocpp(self) -> dict:
        info: dict = {"status": self.status}
        if self.expiry_date is not None:
            info["expiryDate"] = self.expiry_date.isoformat()
        if self.parent_id_tag:
            info["parentIdTag"] = self.parent_id_tag
        return info


def decide(tag: IdTag | None, now: datetime) -> IdTagInfo:
    """Unknown tags are Invalid; a tag past its expiry date is Expired whatever its stored status."""
    if tag is None:
        return IdTagInfo(IdTagStatus.INVALID)
    status = tag.status
    if status == IdTagStatus.ACCEPTED and tag.expiry_date is not None and tag.expiry_date <= now:
        status = IdTagStatus.EXPIRED
    return IdTagInfo(status, tag.expiry_date, tag.parent_id_tag)


class IdTagCache:
    """Decisions by idTag, each reused for `ttl` seconds. Known tags and unknown ones are kept apart,
    each bounded in size: a charger sending ever-new idTags fills the small unknown side only, and
    pushes no known tag out."""

    UNKNOWN_MAX = 10_000

    def __init__(self, ttl: float = 60.0, max_entries: int = 100_000):
        self.ttl = ttl
        self._known = ExpiringCache(max_entries, ttl)
        self._unknown = ExpiringCache(min(max_entries, self.UNKNOWN_MAX), ttl)
        # Invalidations so far: a decision read while one came in is used once, not cached (the
        # row may predate the change).
        self._generation = 0
        self._lock = threading.Lock()

    def info(self, id_tag: str) -> IdTagInfo:
        tag = self._known.get(id_tag)
        # No stored tag holds NUL, and PostgreSQL refuses it in a query: such a tag is unknown.
        if tag is None and NUL not in id_tag and not self._unknown.get(id_tag, False):
            generation = self._generation
            tag = db.session.scalar(select(IdTag).where(IdTag.id_tag == id_tag))
            if tag is not None:
                db.session.expunge(tag)
            db.session.rollback()  # end the read transaction; sessions live as long as a connection
            with self._lock:
                if generation == self._generation:
                    if tag is None:
                        self._unknown.put(id_tag, True)
                    else:
                        self._known.put(id_tag, tag)
        return decide(tag, datetime.now(UTC))

    def invalidate(self, id_tag: str | None = None) -> None:
        """Forget the decision on `id_tag` (on every tag if None)."""
        with self._lock:
            self._generation += 1
        if id_tag is None:
            self._known.clear()
            self._unknown.clear()
        else:
            self._known.pop(id_tag)
            self._unknown.pop(id_tag)
