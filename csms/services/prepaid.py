"""The prepaid rule at Authorize: a tag whose owner pays in advance is refused when the owner's
available balance is below CSMS_MIN_BALANCE.

Authorize is answered on the web node's hot path, so the owner's standing is cached per node like
idTag decisions are (csms.services.authorization): read once, then kept until an announcement says
the owner's wallet changed (csms.services.wallet.BALANCE) or the tag's owner changed
(csms.services.id_tags.CHANGED), bounded by a time to live for what a missed announcement leaves.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

from sqlalchemy import select

from csms.expiring_cache import ExpiringCache
from csms.extensions import db
from csms.models import AccountPolicy, IdTag, IdTagStatus, User, Wallet
from csms.services.authorization import IdTagInfo
from csms.services.bounds import NUL


@dataclass(frozen=True, slots=True)
class Standing:
    """What the rule needs to know of a tag's owner."""

    owner_id: int | None
    prepaid: bool = False
    available_minor: int = 0


def below_minimum(info: IdTagInfo, standing: Standing, min_balance_minor: int) -> IdTagInfo:
    """The rule: an Accepted tag of a prepaid owner with less than the minimum available is Blocked
    (OCPP 1.6 has no "insufficient funds"; Blocked tells the charger not to start). Other decisions
    pass unchanged: a tag nobody owns, or a postpaid owner's, is not refused for money."""
    if info.status != IdTagStatus.ACCEPTED or standing.owner_id is None or not standing.prepaid:
        return info
    if standing.available_minor >= min_balance_minor:
        return info
    return replace(info, status=IdTagStatus.BLOCKED)


class StandingCache:
    """Standings by idTag, kept until the tag or its owner's wallet is announced changed."""

    def __init__(self, ttl: float = 60.0, max_entries: int = 100_000):
        self._by_tag = ExpiringCache(max_entries, ttl)
        self._tags_of_owner: dict[int, set[str]] = {}
        self._generation = 0
        self._lock = threading.Lock()

    def standing(self, id_tag: str) -> Standing:
        found = self._by_tag.get(id_tag)
        if found is not None:
            return found
        if NUL in id_tag:
            return Standing(None)
        generation = self._generation
        row = db.session.execute(
            select(IdTag.user_id, User.account_policy, Wallet.available_minor)
            .select_from(IdTag)
            .join(User, User.id == IdTag.user_id)
            .outerjoin(Wallet, Wallet.user_id == User.id)
            .where(IdTag.id_tag == id_tag)
        ).one_or_none()
        db.session.rollback()  # end the read transaction; sessions live as long as a connection
        found = (
            Standing(None)
            if row is None
            else Standing(row.user_id, row.account_policy == AccountPolicy.PREPAID, row.available_minor or 0)
        )
        with self._lock:
            if generation == self._generation:
                self._by_tag.put(id_tag, found)
                if found.owner_id is not None:
                    self._tags_of_owner.setdefault(found.owner_id, set()).add(id_tag)
        return found

    def forget_tag(self, id_tag: str | None = None) -> None:
        """An idTag changed (its owner may have): read its standing again (every tag's if None)."""
        with self._lock:
            self._generation += 1
            if id_tag is None:
                self._by_tag.clear()
                self._tags_of_owner.clear()
            else:
                self._by_tag.pop(id_tag)

    def forget_owner(self, user_id: str) -> None:
        """A wallet changed: read its owner's tags' standing again."""
        with self._lock:
            self._generation += 1
            for id_tag in self._tags_of_owner.pop(int(user_id), ()):
                self._by_tag.pop(id_tag)
