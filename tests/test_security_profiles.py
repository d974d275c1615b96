"""Each charger's OCPP security profile on the handshake (csms.ocpp.gateway.ChargerAuthenticator):
0 lets that charger, and no other, in without credentials; 1 wants Basic auth; 2 wants Basic auth
over TLS. A handshake without credentials costs no query for an id the directory answers for, and a
change of profile holds at once, on every node (it is announced like a changed key)."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import event
from werkzeug.datastructures import Authorization

from csms.extensions import db
from csms.ocpp.gateway import ChargerAuthenticator, HandshakeRefused
from csms.proxies import TrustedProxies, forwarded_scheme, parse_networks
from csms.services import chargers, fleet, records
from csms.services.errors import InvalidInput
from tests.builders import a_charge_point

KEY = "key-0123456789abcdef"


def basic(user: str, password: str = KEY) -> Authorization:
    return Authorization("basic", {"username": user, "password": password})


@pytest.fixture
def statements(app):
    seen: list[str] = []
    listener = lambda *args: seen.append(args[2])  # noqa: E731
    event.listen(db.engine, "before_cursor_execute", listener)
    yield seen
    event.remove(db.engine, "before_cursor_execute", listener)


def outcome(authenticator: ChargerAuthenticator, charge_point_id: str, authorization, **kwargs):
    """The record's id when let in, else the refusal's (status, code)."""
    try:
        return authenticator.authenticate(charge_point_id, authorization, **kwargs).charge_point_id
    except HandshakeRefused as refused:
        return refused.status, refused.code


@pytest.fixture
def directory(app):
    for charge_point_id, profile in (("SP-0", 0), ("SP-1", 1), ("SP-2", 2)):
        chargers.register(charge_point_id, KEY, security_profile=profile)
    authenticator = ChargerAuthenticator(ttl=60, auto_register=False)
    authenticator.load_directory()
    return authenticator


def test_profile_0_connects_without_credentials_and_is_logged(directory, caplog):
    with caplog.at_level(logging.INFO, logger="csms.ocpp.gateway"):
        assert outcome(directory, "SP-0", None) == "SP-0"
    assert "SP-0 connects without credentials (security profile 0)" in caplog.text
    assert outcome(directory, "SP-0", basic("SP-0", "whatever-it-sends-0")) == "SP-0"  # not checked


def test_profile_1_and_2_without_credentials_are_refused_as_before(directory):
    unauthorized = (401, "unauthorized")
    for charge_point_id in ("SP-1", "SP-2", "SP-UNKNOWN", "bad id"):
        assert outcome(directory, charge_point_id, None) == unauthorized
        assert outcome(directory, charge_point_id, basic("SP-0")) == unauthorized  # another's user name
    assert outcome(directory, "SP-1", basic("SP-1", "wrong-key-0123456789")) == unauthorized
    assert outcome(directory, "SP-1", basic("SP-1")) == "SP-1"
    assert outcome(directory, "SP-1", basic("SP-1"), secure=True) == "SP-1"


def test_profile_2_wants_tls_and_its_key(directory):
    assert outcome(directory, "SP-2", basic("SP-2")) == (403, "tls_required")
    assert outcome(directory, "SP-2", basic("SP-2"), secure=True) == "SP-2"
    assert outcome(directory, "SP-2", basic("SP-2", "wrong-key-0123456789"), secure=True) == (
        401,
        "unauthorized",
    )


def test_handshakes_without_credentials_for_made_up_ids_cost_no_query(directory, statements):
    statements.clear()
    for n in range(200):
        assert outcome(directory, f"FLOOD-{n}", None) == (401, "unauthorized")
    assert outcome(directory, "SP-0", None) == "SP-0"
    assert statements == []


def test_before_the_directory_loads_a_profile_0_charger_is_looked_up(app, statements):
    a_charge_point(charge_point_id="EARLY-0", auth_key=KEY, security_profile=0)
    authenticator = ChargerAuthenticator(ttl=60, auto_register=False)  # not loaded (database was down)
    statements.clear()
    assert outcome(authenticator, "EARLY-0", None) == "EARLY-0"
    assert outcome(authenticator, "EARLY-0", None) == "EARLY-0"
    assert len(statements) == 1  # then cached


@pytest.fixture
def gateway(app):
    """The app's own gateway: it follows the announcements of this process's commits, as every node
    follows every node's (csms.cluster.broadcast)."""
    gateway = app.extensions["ocpp"]
    gateway.authenticator.load_directory()
    return gateway


def test_a_change_of_profile_holds_at_once(gateway, statements):
    authenticator = gateway.authenticator
    chargers.register("MOVE-1", KEY)
    assert outcome(authenticator, "MOVE-1", None) == (401, "unauthorized")
    records.update_point(fleet.by_id("MOVE-1"), {"security_profile": 0})
    statements.clear()
    assert outcome(authenticator, "MOVE-1", None) == "MOVE-1"
    assert outcome(authenticator, "MOVE-1", None) == "MOVE-1"
    assert len(statements) == 1  # the changed charger is read once, then cached
    records.update_point(fleet.by_id("MOVE-1"), {"security_profile": 2})
    assert outcome(authenticator, "MOVE-1", None) == (401, "unauthorized")
    assert outcome(authenticator, "MOVE-1", basic("MOVE-1")) == (403, "tls_required")
    records.update_point(fleet.by_id("MOVE-1"), {"security_profile": 1})
    assert outcome(authenticator, "MOVE-1", basic("MOVE-1")) == "MOVE-1"


def test_a_charger_registered_with_profile_0_connects_at_once(gateway):
    records.register_point(
        {
            "charge_point_id": "NEW-0",
            "connectors": 1,
            "registration_status": "Accepted",
            "security_profile": 0,
        }
    )
    assert outcome(gateway.authenticator, "NEW-0", None) == "NEW-0"


@pytest.mark.parametrize("profile", [3, -1, None])
def test_a_profile_outside_0_1_2_is_refused(app, profile):
    with pytest.raises(InvalidInput) as refused:
        chargers.register("BAD-SP", KEY, security_profile=profile)
    assert refused.value.code == "invalid_security_profile"
    point = a_charge_point(charge_point_id="BAD-SP-2", auth_key=KEY)
    with pytest.raises(InvalidInput):
        records.update_point(point, {"security_profile": profile})


# --- TLS ended by a reverse proxy -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "scheme"),
    [
        ("https", "https"),
        ("wss", "https"),
        ("HTTP", "http"),
        ("http, https", "https"),
        ("gopher", None),
        (None, None),
    ],
)
def test_the_nearest_proxys_forwarded_proto(header, scheme):
    assert forwarded_scheme(header) == scheme


@pytest.mark.parametrize(
    ("peer", "header", "scheme"),
    [
        ("10.0.0.5", "https", "https"),  # our proxy ended TLS
        ("10.0.0.5", "http", "http"),
        ("10.0.0.5", None, "http"),
        ("203.0.113.9", "https", "http"),  # anyone else: the header is the client's word, ignored
    ],
)
def test_only_a_trusted_proxy_says_the_connection_was_tls(peer, header, scheme):
    seen = {}

    def app(environ, start_response):
        seen["scheme"] = environ["wsgi.url_scheme"]
        return []

    environ = {"REMOTE_ADDR": peer, "wsgi.url_scheme": "http"}
    if header is not None:
        environ["HTTP_X_FORWARDED_PROTO"] = header
    TrustedProxies(app, parse_networks("10.0.0.0/24"))(environ, None)
    assert seen["scheme"] == scheme


# --- the dashboard: set on the new-point form, shown and changed on the charger's page ---------------


def test_the_dashboard_registers_shows_and_changes_a_profile(make_app):
    from tests.test_dashboard import PASSWORD, csrf_of, sign_in

    site = make_app()  # each request in an app context of its own, as served (see test_dashboard)
    with site.app_context():
        from csms.services import users

        users.create_user("ops@example.test", PASSWORD, role="operator")
    client = site.test_client()
    sign_in(client, "ops@example.test")
    form = client.get("/points/new").data.decode()
    assert '<option value="1" selected>1: HTTP Basic auth</option>' in form
    token = csrf_of(form.encode())
    client.post("/points/new", data={"csrf_token": token, "chargePointId": "DASH-0", "securityProfile": "0"})
    page = client.get("/chargers/DASH-0").data.decode()
    assert '<dd id="security-profile">0: no credentials (identified by its URL alone)' in page
    changed = client.post(
        "/chargers/DASH-0/security-profile", data={"csrf_token": token, "securityProfile": "2"}
    )
    assert (changed.status_code, changed.headers["Location"]) == (302, "/chargers/DASH-0")
    assert (
        '<dd id="security-profile">2: HTTP Basic auth over TLS'
        in client.get("/chargers/DASH-0").data.decode()
    )
    refused = client.post(
        "/chargers/DASH-0/security-profile", data={"csrf_token": token, "securityProfile": "7"}
    )
    assert refused.status_code == 302
    assert "Must be one of: 0, 1, 2." in client.get("/chargers/DASH-0").data.decode()
    with site.app_context():
        assert fleet.by_id("DASH-0").security_profile == 2
    assert client.post("/chargers/NOPE/security-profile", data={"csrf_token": token}).status_code == 404
