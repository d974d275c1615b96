"""The handshake's credential check: the charger directory is read once, not once per charger, and
what the directory says still decides who may connect."""

from __future__ import annotations

import pytest
from sqlalchemy import event
from werkzeug.datastructures import Authorization

from csms.extensions import db
from csms.ocpp.gateway import ChargerAuthenticator, HandshakeRefused
from tests.builders import a_charge_point

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
