"""Keeping chargers' local authorization lists in step with the id tags (csms.services.local_lists)."""

import dramatiq

from actors import priorities
from csms.extensions import db
from csms.services import local_lists


@dramatiq.actor(
    queue_name="commands",
    max_retries=10,
    min_backoff=500,
    max_backoff=60_000,
    priority=priorities.BOOKKEEPING,
)
def sync_local_lists(reason: dict) -> None:
    """Tags changed (`{"idTags": [...], "groups": [...]}`: the lists that may hold them follow;
    `groups` null: every list) or chargers' policies did (`{"chargePoints": [pk, ...]}`): queue the
    updates that bring the lists where they should be. Safe to run twice: a list already right sends
    nothing."""
    if "chargePoints" in reason:
        local_lists.begin([int(pk) for pk in reason["chargePoints"]])
    else:
        local_lists.sync_all(reason.get("groups"))
    db.session.commit()
