"""Authorization of id tags (OCPP 1.6 Authorize, StartTransaction, StopTransaction).

Charger calls are answered on the hot path, so what is known of a tag (and of its group) comes from
a small in-process cache. A change to an idTag anywhere in the cluster is announced
(csms.services.id_tags) and every node's cache drops the tag when it commits (every tag, when the
changed one heads a group); `ttl` bounds what a missed announcement could leave behind.

The answer itself is `authorize()`: a chain of rules, each of which may refuse an otherwise
accepted tag. A new rule (a prepaid balance, say) is one more function in `RULES`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from sqlalchemy import select

from csms.cluster import presence
from csms.expiring_cache import ExpiringCache
from csms.extensions import db
from csms.models import ChargePoint, IdTag, IdTagStatus, Transaction, TransactionState
from csms.services.bounds import NUL

CONCURRENT_TX = "ConcurrentTx"


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


@dataclass(frozen=True, slots=True)
class TagRecord:
    """What the decision needs of a stored tag and of its group's tag (None when it has no group,
    or the group is only a name with no tag of its own)."""

    status: str
    expiry_date: datetime | None
    parent_id_tag: str | None
    parent_status: str | None = None
    parent_expiry_date: datetime | None = None
    owner_id: int | None = None  # the customer the tag bills (for rules about their account)


def _own_status(status: str, expiry_date: datetime | None, now: datetime) -> str:
    if status == IdTagStatus.ACCEPTED and expiry_date is not None and expiry_date <= now:
        return IdTagStatus.EXPIRED
    return status


def decide(tag: TagRecord | None, now: datetime) -> IdTagInfo:
    """Unknown tags are Invalid; a tag past its expiry date is Expired whatever its stored status;
    the group's status applies to every member (a member of a blocked group is Blocked, of an
    expired one Expired), and the earlier of the two expiry dates is the one answered."""
    if tag is None:
        return IdTagInfo(IdTagStatus.INVALID)
    status = _own_status(tag.status, tag.expiry_date, now)
    expiry = tag.expiry_date
    if tag.parent_status is not None:
        if status == IdTagStatus.ACCEPTED:
            status = _own_status(tag.parent_status, tag.parent_expiry_date, now)
        if tag.parent_expiry_date is not None and (expiry is None or tag.parent_expiry_date < expiry):
            expiry = tag.parent_expiry_date
    return IdTagInfo(status, expiry, tag.parent_id_tag)


def load(id_tag: str) -> TagRecord | None:
    """The stored tag and its group's tag: one query."""
    parent = IdTag.__table__.alias("parent")
    row = db.session.execute(
        select(IdTag.status, IdTag.expiry_date, IdTag.parent_id_tag, parent.c.status, parent.c.expiry_date)
        .add_columns(IdTag.user_id)
        .outerjoin(parent, parent.c.id_tag == IdTag.parent_id_tag)
        .where(IdTag.id_tag == id_tag)
    ).first()
    return None if row is None else TagRecord(*row)


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
        return decide(self.record(id_tag), datetime.now(UTC))

    def record(self, id_tag: str) -> TagRecord | None:
        """What is stored of the tag and its group (None: unknown), cached."""
        tag = self._known.get(id_tag)
        # No stored tag holds NUL, and PostgreSQL refuses it in a query: such a tag is unknown.
        if tag is None and NUL not in id_tag and not self._unknown.get(id_tag, False):
            generation = self._generation
            try:
                tag = load(id_tag)
            finally:
                db.session.rollback()  # end the read transaction; sessions live as long as a connection
            with self._lock:
                if generation == self._generation:
                    if tag is None:
                        self._unknown.put(id_tag, True)
                    else:
                        self._known.put(id_tag, tag)
        return tag

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


def running_elsewhere(id_tag: str, charge_point_pk: int) -> bool:
    """Whether `id_tag` has an open transaction on another charger that is connected now. The
    charger asking knows its own transactions better than the database can in time
    (csms.ocpp.open_transactions); a transaction left open on a charger that went away (it will
    never send its StopTransaction) must not lock its driver out everywhere."""
    try:
        return (
            db.session.scalar(
                select(Transaction.id)
                .join(ChargePoint, ChargePoint.id == Transaction.charge_point_id)
                .where(
                    Transaction.id_tag == id_tag,
                    Transaction.state == TransactionState.STARTED,
                    Transaction.charge_point_id != charge_point_pk,
                    presence.connected_filter(ChargePoint.charge_point_id, True),
                )
                .limit(1)
            )
            is not None
        )
    finally:
        db.session.rollback()


@dataclass(frozen=True, slots=True)
class Attempt:
    """An Authorize or a StartTransaction, as the rules see it."""

    id_tag: str
    charge_point_pk: int
    info: IdTagInfo  # the tag's own (and its group's) decision
    starting: bool  # a StartTransaction (True) or an Authorize (False)
    owner_id: int | None  # the tag's owner, if it has one


Rule = Callable[[Attempt], str | None]  # a refusal status, or None to let the attempt through


def concurrent_transaction(attempt: Attempt) -> str | None:
    """§7.2 ConcurrentTx: the tag is charging at another connected charger. Asked at
    StartTransaction only: Authorize stays a cache lookup (the StartTransaction that follows it
    gets the refusal, and the charger stops), and a driver who presents the card to stop charging
    here is not refused."""
    if not attempt.starting or NUL in attempt.id_tag:
        return None
    return CONCURRENT_TX if running_elsewhere(attempt.id_tag, attempt.charge_point_pk) else None


RULES: list[Rule] = [concurrent_transaction]


def authorize(id_tag: str, charge_point_pk: int, cache: IdTagCache, *, starting: bool) -> IdTagInfo:
    """The idTagInfo to answer an Authorize or (`starting`) a StartTransaction: the tag's status,
    then the first refusal of `RULES` for an accepted tag."""
    record = cache.record(id_tag)
    info = decide(record, datetime.now(UTC))
    if info.status != IdTagStatus.ACCEPTED:
        return info
    attempt = Attempt(id_tag, charge_point_pk, info, starting, record.owner_id if record else None)
    for rule in RULES:
        refusal = rule(attempt)
        if refusal is not None:
            return replace(info, status=refusal)
    return info
