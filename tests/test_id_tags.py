"""Changing an idTag (csms.services.id_tags): the decision every node's cache gives follows at once,
and bad changes are refused with nothing written."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import event, select

from csms.extensions import db
from csms.models import IdTag
from csms.services import id_tags, users
from csms.services.authorization import IdTagCache
from csms.services.errors import InvalidInput, NotFound


@pytest.fixture
def cache(app):
    """The app's gateway's cache: it follows the announcements of this process's commits (embedded)."""
    return app.extensions["ocpp"].id_tags


def test_a_tag_refused_as_unknown_is_accepted_once_issued(cache):
    assert cache.info("CARD-1").status == "Invalid"
    users.create_user("ada@example.test", "password-123", id_tag="CARD-1")
    assert cache.info("CARD-1").as_ocpp() == {"status": "Accepted"}


def test_a_blocked_or_expired_tag_is_decided_so_at_once(cache):
    users.create_user("ada@example.test", "password-123", id_tag="CARD-2")
    assert cache.info("CARD-2").status == "Accepted"
    id_tags.update("CARD-2", status="Blocked")
    assert cache.info("CARD-2").as_ocpp() == {"status": "Blocked"}
    id_tags.update("CARD-2", status="Accepted", expiry_date=datetime(2026, 1, 1, tzinfo=UTC))
    assert cache.info("CARD-2").as_ocpp() == {"status": "Expired", "expiryDate": "2026-01-01T00:00:00+00:00"}


@pytest.mark.parametrize(
    ("id_tag", "changes", "error", "code"),
    [
        ("CARD-3", {"status": "Lost"}, InvalidInput, "invalid_status"),
        ("CARD-3", {"expiry_date": datetime(2030, 1, 1)}, InvalidInput, "invalid_expiry_date"),
        ("NO-SUCH-CARD", {"status": "Blocked"}, NotFound, "id_tag_not_found"),
    ],
)
def test_bad_changes_are_refused(app, cache, id_tag, changes, error, code):
    users.create_user("ada@example.test", "password-123", id_tag="CARD-3")
    heard = app.extensions["broadcasts"].counters["announcements"]
    with pytest.raises(error) as refused:
        id_tags.update(id_tag, **changes)
    assert refused.value.code == code
    assert app.extensions["broadcasts"].counters["announcements"] == heard
    assert db.session.scalar(select(IdTag.status).where(IdTag.id_tag == "CARD-3")) == "Accepted"


def test_a_decision_overtaken_by_a_change_is_not_cached(app):
    cache = IdTagCache(ttl=60)
    overtake = lambda *args: cache.invalidate("CARD-4")  # noqa: E731
    event.listen(db.engine, "before_cursor_execute", overtake)
    try:
        assert cache.info("CARD-4").status == "Invalid"
    finally:
        event.remove(db.engine, "before_cursor_execute", overtake)
    db.session.add(IdTag(id_tag="CARD-4"))  # not announced: only a read could tell
    db.session.commit()
    assert cache.info("CARD-4").status == "Accepted"


def test_lost_announcements_drop_every_decision(app, cache):
    assert cache.info("CARD-5").status == "Invalid"
    db.session.add(IdTag(id_tag="CARD-5"))  # as if its announcement was lost
    db.session.commit()
    assert cache.info("CARD-5").status == "Invalid"
    app.extensions["broadcasts"]._resynchronize()
    assert cache.info("CARD-5").status == "Accepted"
