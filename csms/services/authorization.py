"""Authorization of id tags (OCPP 1.6 Authorize, StartTransaction, StopTransaction).

Charger calls are answered on the hot path, so decisions come from a small in-process cache. A
change made through this process invalidates it at once; changes made on another node are picked
up within `ttl` seconds.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select

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
    def __init__(self, ttl: float = 60.0, max_entries: int = 100_000):
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, IdTag | None]] = {}
        self._lock = threading.Lock()

    def info(self, id_tag: str) -> IdTagInfo:
        now = time.monotonic()
        entry = self._entries.get(id_tag)
        if entry is None or entry[0] < now:
            tag = None
            if NUL not in id_tag:  # no stored tag has one, and PostgreSQL refuses it in a query
                tag = db.session.scalar(select(IdTag).where(IdTag.id_tag == id_tag))
                if tag is not None:
                    db.session.expunge(tag)
                db.session.rollback()  # end the read transaction; sessions live as long as a connection
            with self._lock:
                if len(self._entries) >= self.max_entries:
                    self._entries.clear()
                self._entries[id_tag] = entry = (now + self.ttl, tag)
        return decide(entry[1], datetime.now(UTC))

    def invalidate(self, id_tag: str | None = None) -> None:
        with self._lock:
            if id_tag is None:
                self._entries.clear()
            else:
                self._entries.pop(id_tag, None)
