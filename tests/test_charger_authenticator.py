"""The handshake's credential check: the charger directory is read once, not once per charger, and
what the directory says still decides who may connect; a change to a charger holds at once."""

from __future__ import annotations

import pytest
from sqlalchemy import event
from werkzeug.datastructures import Authorization

from csms.extensions import db
from csms.ocpp.gateway import ChargerAuthenticator, HandshakeRefused
from csms.services import chargers, fleet, records
from csms.services.errors import Conflict
from tests.builders import a_charge_point, a_transaction

KEY = "key-0123456789abcdef"


def basic(user: str, password: str) -> Authorization:
    return Authorization("basic", {"username": user, "password": password})


@pytest.fixture
def statements(app):
    """Counts the SQL statements the app runs."""
    seen: list[str] = []
    listener = lambda *args: seen.append(args[2])  # noqa: E731
    event.listen(db.engine, "before_cursor_execute", listener)
    yield seen
    event.remove(db.engine, "before_cursor_execute", listener)


def test_a_loaded_directory_answers_without_the_database(app, statements):
    ids = [a_charge_point(charge_point_id=f"DIR-{n}", auth_key=KEY).charge_point_id for n in range(50)]
    authenticator = ChargerAuthenticator(ttl=60, auto_register=False)
    statements.clear()
    assert authenticator.load_directory() == 50
    assert len(statements) == 1
    statements.clear()
    for charge_point_id in ids:
        assert authenticator.authenticate(charge_point_id, basic(charge_point_id, KEY)).charge_point_id == (
            charge_point_id
        )
    assert statements == []
    with pytest.raises(HandshakeRefused) as refused:
        authenticator.authenticate(ids[0], basic(ids[0], "another-key-0123456789"))
    assert refused.value.status == 401


def test_a_charger_added_after_loading_is_looked_up_alone(app, statements):
    authenticator = ChargerAuthenticator(ttl=60, auto_register=False)
    authenticator.load_directory()
    point_id = a_charge_point(charge_point_id="DIR-LATE", auth_key=KEY).id
    statements.clear()
    assert authenticator.authenticate("DIR-LATE", basic("DIR-LATE", KEY)).pk == point_id
    assert len(statements) == 1
    with pytest.raises(HandshakeRefused) as refused:
        authenticator.authenticate("DIR-NOBODY", basic("DIR-NOBODY", KEY))
    assert refused.value.status == 404


def test_a_reload_brings_changes_made_elsewhere(app):
    point = a_charge_point(charge_point_id="DIR-PENDING", auth_key=KEY, registration_status="Pending")
    authenticator = ChargerAuthenticator(ttl=60, auto_register=False)
    authenticator.load_directory()
    credentials = basic("DIR-PENDING", KEY)
    assert authenticator.authenticate("DIR-PENDING", credentials).registration_status == "Pending"
    point.registration_status = "Accepted"  # an operator, through another node
    db.session.commit()
    authenticator.load_directory()
    assert authenticator.authenticate("DIR-PENDING", credentials).registration_status == "Accepted"


# --- changes made anywhere hold at once (csms.services.chargers announces them) --------------------


@pytest.fixture
def gateway(app):
    """The app's own gateway: it follows the announcements of this process's commits (embedded)."""
    gateway = app.extensions["ocpp"]
    gateway.authenticator.load_directory()
    return gateway


def refused(authenticator, charge_point_id: str, key: str) -> int | None:
    try:
        authenticator.authenticate(charge_point_id, basic(charge_point_id, key))
    except HandshakeRefused as exc:
        return exc.status
    return None


def test_a_charger_refused_as_unknown_is_let_in_once_registered(gateway, statements):
    authenticator = gateway.authenticator
    assert refused(authenticator, "NEW-1", KEY) == 404
    statements.clear()
    assert refused(authenticator, "NEW-1", KEY) == 404 and statements == []  # the negative cache holds
    records.register_point(
        {"charge_point_id": "NEW-1", "auth_key": KEY, "connectors": 1, "registration_status": "Accepted"}
    )
    assert refused(authenticator, "NEW-1", KEY) is None


def test_a_changed_key_and_status_hold_at_once_and_a_deleted_charger_is_refused(gateway):
    authenticator = gateway.authenticator
    chargers.register("CHG-1", KEY, status="Pending")
    assert authenticator.authenticate("CHG-1", basic("CHG-1", KEY)).registration_status == "Pending"
    point = fleet.by_id("CHG-1")
    records.update_point(point, {"auth_key": "new-key-0123456789", "registration_status": "Accepted"})
    assert refused(authenticator, "CHG-1", KEY) == 401
    assert authenticator.authenticate("CHG-1", basic("CHG-1", "new-key-0123456789")).registration_status == (
        "Accepted"
    )
    records.delete_point(point)
    assert refused(authenticator, "CHG-1", "new-key-0123456789") == 404


def test_a_change_that_rolls_back_announces_nothing(gateway, app):
    point = a_charge_point(charge_point_id="KEPT-1", auth_key=KEY)
    a_transaction(point)
    gateway.authenticator.load_directory()
    heard = app.extensions["broadcasts"].counters["announcements"]
    with pytest.raises(Conflict):
        records.delete_point(point)
    assert app.extensions["broadcasts"].counters["announcements"] == heard
    assert refused(gateway.authenticator, "KEPT-1", KEY) is None


def test_a_fleet_import_is_one_announcement_and_one_reload(gateway, app, statements):
    authenticator = gateway.authenticator
    assert refused(authenticator, "FLEET-2", KEY) == 404
    heard = app.extensions["broadcasts"].counters["announcements"]
    chargers.import_fleet([(n, f"FLEET-{n}", KEY) for n in range(1, 4)])
    assert app.extensions["broadcasts"].counters["announcements"] == heard + 1
    statements.clear()
    assert [refused(authenticator, f"FLEET-{n}", KEY) for n in range(1, 4)] == [None, None, None]
    assert statements == []  # the reload brought them all


def test_a_lookup_overtaken_by_a_change_is_not_cached(app, statements):
    """The change commits while the lookup reads: what it read may predate the change, so it answers
    this once and the next connection reads again."""
    authenticator = ChargerAuthenticator(ttl=60, auto_register=False)
    overtake = lambda *args: authenticator.forget("RACE-1")  # noqa: E731
    event.listen(db.engine, "before_cursor_execute", overtake)
    try:
        assert refused(authenticator, "RACE-1", KEY) == 404
    finally:
        event.remove(db.engine, "before_cursor_execute", overtake)
    a_charge_point(charge_point_id="RACE-1", auth_key=KEY)  # not announced: only a read could tell
    assert refused(authenticator, "RACE-1", KEY) is None


def test_a_load_overtaken_by_a_change_is_read_again(app, statements):
    a_charge_point(charge_point_id="RACE-2", auth_key=KEY)
    authenticator = ChargerAuthenticator(ttl=60, auto_register=False)
    changes = iter([True])
    overtake = lambda *args: next(changes, False) and authenticator.forget("RACE-2")  # noqa: E731
    event.listen(db.engine, "before_cursor_execute", overtake)
    try:
        statements.clear()
        assert authenticator.load_directory() == 1
    finally:
        event.remove(db.engine, "before_cursor_execute", overtake)
    assert len(statements) == 2
    statements.clear()
    assert refused(authenticator, "RACE-2", KEY) is None and statements == []


def test_lost_announcements_drop_every_cached_charger(gateway, app):
    """The listening connection was lost and is back: announcements may have been missed."""
    authenticator = gateway.authenticator
    assert refused(authenticator, "MISSED-1", KEY) == 404
    a_charge_point(charge_point_id="MISSED-1", auth_key=KEY)  # as if its announcement was lost
    assert refused(authenticator, "MISSED-1", KEY) == 404
    app.extensions["broadcasts"]._resynchronize()
    assert refused(authenticator, "MISSED-1", KEY) is None
