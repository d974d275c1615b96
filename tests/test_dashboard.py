"""The dashboard's server side through the Flask test client: sign-in, roles, CSRF, the overview's
figures and alerts, cross-origin settings. The browser tests (`test_dashboard_browser.py`) drive the
live parts in a real Chromium."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import dramatiq
import pytest
from sqlalchemy import func, select
from werkzeug.datastructures import MultiDict

from csms.cors import parse_origins
from csms.dashboard import forms
from csms.extensions import db
from csms.models import ChargingSession, CmsEvent, LedgerEntry, OutboxMessage, Station, Tariff, User, Wallet
from csms.ocpp.validation import request_schema, validate_request
from csms.services import credentials, customers, fleet, history, overview, users, wallet
from csms.services.errors import InvalidInput
from tests.builders import a_charge_point, a_transaction, a_wallet, connections

PASSWORD = "operator-password"


@pytest.fixture
def site(make_app):
    """An app whose test client runs each request in an app context of its own, as a served app does
    (the `app` fixture's context would share `g`, and with it the CSRF token, across requests)."""
    return make_app()


@pytest.fixture
def operator(site):
    with site.app_context():
        return users.create_user("ops@example.test", PASSWORD, role="operator").id


@pytest.fixture
def customer(site):
    with site.app_context():
        return users.create_user("ada@example.test", PASSWORD, id_tag="ADA-1").id


def csrf_of(page: bytes) -> str:
    return re.search(rb'name="csrf_token" value="([^"]+)"', page).group(1).decode()


def sign_in(client, email: str, password: str = PASSWORD, next_: str | None = None):
    token = csrf_of(client.get("/login").data)
    form = {"email": email, "password": password, "csrf_token": token}
    if next_ is not None:
        form["next"] = next_
    return client.post("/login", data=form)


def test_anonymous_visitors_get_the_sign_in_page(site):
    client = site.test_client()
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=/"
    page = client.get("/login")
    assert page.status_code == 200
    assert b'<input type="password" name="password"' in page.data


def test_an_operator_signs_in_sees_the_overview_and_signs_out(site, operator):
    client = site.test_client()
    response = sign_in(client, "ops@example.test")
    assert (response.status_code, response.headers["Location"]) == (302, "/")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    page = client.get("/")
    assert page.status_code == 200
    assert b"Chargers online" in page.data and b"ops@example.test" in page.data
    out = client.post("/logout", data={"csrf_token": csrf_of(page.data)})
    assert (out.status_code, out.headers["Location"]) == (302, "/login")
    assert client.get("/").status_code == 302


def test_a_customer_is_refused(site, customer):
    client = site.test_client()
    response = sign_in(client, "ada@example.test")
    assert response.status_code == 403
    assert b"Operators only" in response.data
    assert client.get("/").status_code == 302  # no session was opened


def test_wrong_passwords_are_refused_and_limited_like_the_rest_login(site, operator):
    client = site.test_client()
    response = sign_in(client, "ops@example.test", "wrong-password")
    assert response.status_code == 401
    assert b"wrong email or password" in response.data
    statuses = [sign_in(client, "ops@example.test", "wrong-password").status_code for _ in range(12)]
    assert statuses[-1] == 429


def test_a_form_without_its_csrf_token_is_refused(site, operator):
    client = site.test_client()
    response = client.post("/login", data={"email": "ops@example.test", "password": PASSWORD})
    assert response.status_code == 400
    assert b"CSRF token is missing" in response.data
    assert sign_in(client, "ops@example.test").status_code == 302
    forged = client.post("/logout", data={"csrf_token": "forged"})
    assert forged.status_code == 400
    assert client.get("/").status_code == 200  # still signed in


def test_a_demoted_operator_loses_the_dashboard_at_the_next_request(site, operator):
    client = site.test_client()
    sign_in(client, "ops@example.test")
    with site.app_context():
        db.session.get(User, operator).role = "customer"
        db.session.commit()
    assert client.get("/").status_code == 403


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "javascript:alert(1)"])
def test_sign_in_never_redirects_to_another_site(site, operator, target):
    response = sign_in(site.test_client(), "ops@example.test", next_=target)
    assert response.headers["Location"] == "/"


def test_sign_in_returns_to_the_page_asked_for(site, operator):
    response = sign_in(site.test_client(), "ops@example.test", next_="/dashboard/summary")
    assert response.headers["Location"] == "/dashboard/summary"


def test_secure_cookies_when_asked(make_app):
    app = make_app(SECURE_COOKIES=True)
    with app.app_context():
        users.create_user("ops@example.test", PASSWORD, role="operator")
    cookie = sign_in(app.test_client(), "ops@example.test").headers["Set-Cookie"]
    assert "Secure" in cookie


def test_the_overview_counts_the_network(any_db_app):
    now = datetime.now(UTC)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    online = a_charge_point(charge_point_id="CP-ON", connectors=2)
    faulted = a_charge_point(charge_point_id="CP-FAULT", connectors=1)
    a_charge_point(charge_point_id="CP-OFF", connectors=1, last_seen_at=now - timedelta(hours=2))
    online.connectors[1].status = "Charging"
    online.connectors[2].status = "Available"
    faulted.connectors[1].status = "Faulted"
    db.session.commit()
    a_transaction(online, meter_start_wh=1000, meter_last_wh=4500)  # running: 3,500 Wh so far
    a_transaction(
        faulted, meter_start_wh=0, meter_stop_wh=2000, energy_wh=2000, stopped_at=now, state="stopped"
    )
    a_transaction(
        faulted,
        meter_start_wh=0,
        energy_wh=9000,
        state="stopped",
        started_at=today - timedelta(hours=3),
        stopped_at=today - timedelta(hours=1),  # yesterday: not today's energy
    )
    wallet = a_wallet()
    db.session.add_all(
        [
            LedgerEntry(wallet_id=wallet.id, kind="capture", amount_minor=1234, currency="EUR"),
            LedgerEntry(wallet_id=wallet.id, kind="topup", amount_minor=5000, currency="EUR"),
        ]
    )
    db.session.commit()

    connections("CP-ON", "CP-UNKNOWN")  # connected to another node; one no longer registered
    summary = overview.summary(today)
    assert summary == overview.Summary(
        chargers=3,
        online=1,
        faulted_chargers=1,
        connectors_by_status={"Charging": 1, "Available": 1, "Faulted": 1, "Unavailable": 1},
        active_transactions=1,
        energy_today_wh=5500,
        revenue_today_minor={"EUR": 1234},
    )
    assert summary.offline == 2
    offline = overview.offline_for(15, now)
    assert [c.charge_point_id for c in offline] == ["CP-OFF", "CP-FAULT"]  # never seen comes last
    assert [(c.charge_point_id, c.connector_id) for c in overview.faulted_connectors()] == [("CP-FAULT", 1)]


def test_the_overview_page_shows_alerts_and_every_connector(site, operator):
    with site.app_context():
        point = a_charge_point(charge_point_id="CP-ALERT", connectors=2)
        point.connectors[2].status = "Faulted"
        point.connectors[2].error_code = "GroundFailure"
        db.session.commit()
    client = site.test_client()
    sign_in(client, "ops@example.test")
    page = client.get("/").data.decode()
    assert 'data-charger="CP-ALERT" data-connector="1"' in page
    assert 'data-charger="CP-ALERT" data-connector="2"' in page
    assert "Connector 2 of <b>CP-ALERT</b> is Faulted (GroundFailure)" in page
    assert "<b>CP-ALERT</b> offline for more than 15 min (never seen)" in page
    fragment = client.get("/dashboard/summary").data.decode()
    assert "Connector 2 of <b>CP-ALERT</b> is Faulted" in fragment


@pytest.mark.parametrize(
    ("text", "origins"),
    [
        ("", []),
        ("https://ops.example.com", ["https://ops.example.com"]),
        (
            " https://A.example.com:8443 , http://localhost:3000 ",
            ["https://a.example.com:8443", "http://localhost:3000"],
        ),
    ],
)
def test_cors_origins_are_parsed(text, origins):
    assert parse_origins(text) == origins


@pytest.mark.parametrize("text", ["ops.example.com", "https://ops.example.com/path", "ftp://x", "*"])
def test_a_malformed_origin_fails_the_start(text, make_app):
    with pytest.raises(ValueError, match="CSMS_CORS_ORIGINS"):
        make_app(CORS_ORIGINS=text)


def test_listed_origins_may_call_the_api_and_others_may_not(make_app):
    client = make_app(CORS_ORIGINS="https://ops.example.com").test_client()
    allowed = client.get("/api/cms/points", headers={"Origin": "https://ops.example.com"})
    assert allowed.headers.get("Access-Control-Allow-Origin") == "https://ops.example.com"
    other = client.get("/api/cms/points", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers
    preflight = client.options(
        "/api/cms/points",
        headers={
            "Origin": "https://ops.example.com",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "Authorization",
        },
    )
    assert preflight.headers.get("Access-Control-Allow-Origin") == "https://ops.example.com"
    assert "authorization" in preflight.headers.get("Access-Control-Allow-Headers", "").lower()


def test_no_origin_is_allowed_by_default(app):
    response = app.test_client().get("/api/cms/points", headers={"Origin": "https://ops.example.com"})
    assert "Access-Control-Allow-Origin" not in response.headers


def test_the_charger_list_searches_and_filters(any_db_app):
    fast = a_charge_point(charge_point_id="CP-FAST-1", connectors=2, vendor="Volta", model="DC150")
    a_charge_point(charge_point_id="CP-SLOW-1", connectors=1, vendor="Acme", firmware_version="2.1.0")
    a_charge_point(charge_point_id="CP-NEW", connectors=1, registration_status="Pending")
    fast.connectors[2].status = "Faulted"
    db.session.commit()

    assert fleet.search(connection="online").total == 0  # nobody connected
    connections("CP-FAST-1")

    def ids(**filters) -> list[str]:
        page = fleet.search(**filters)
        assert page.total == len(page.items)
        return [point.charge_point_id for point in page.items]

    assert ids() == ["CP-FAST-1", "CP-NEW", "CP-SLOW-1"]
    assert ids(q="volta") == ["CP-FAST-1"]
    assert ids(q="2.1") == ["CP-SLOW-1"]
    assert ids(connection="online") == ["CP-FAST-1"]
    assert ids(connection="offline") == ["CP-NEW", "CP-SLOW-1"]
    assert ids(registration="Pending") == ["CP-NEW"]
    assert ids(status="Faulted") == ["CP-FAST-1"]
    assert ids(q="cp-", status="Available") == []  # connectors start Unavailable
    paged = fleet.search(page=2, per_page=2)
    assert ([p.charge_point_id for p in paged.items], paged.total, paged.pages) == (["CP-SLOW-1"], 3, 2)


def test_the_charger_pages_render(site, operator):
    with site.app_context():
        point = a_charge_point(charge_point_id="CP-PAGE", connectors=2, vendor="Volta")
        a_transaction(point, meter_start_wh=100, meter_last_wh=1100)
    client = site.test_client()
    sign_in(client, "ops@example.test")
    listing = client.get("/chargers?q=page").data.decode()
    assert 'href="/chargers/CP-PAGE"' in listing and "1 charger<" in listing
    page = client.get("/chargers/CP-PAGE")
    assert page.status_code == 200
    html = page.data.decode()
    assert 'data-charger="CP-PAGE" data-connector="2"' in html
    assert '<b id="energy">1000</b> Wh' in html  # the running transaction so far
    assert "<option selected>RemoteStartTransaction</option>" in html
    assert client.get("/chargers/CP-NONE").status_code == 404
    fragment = client.get("/chargers/CP-PAGE/command-form?action=Reset").data.decode()
    assert '<select id="field-type" name="type" required>' in fragment
    assert "<option>Hard</option>" in fragment and "<option>Soft</option>" in fragment


def test_the_pages_show_chargers_connected_to_other_nodes(site, operator):
    """The cluster's presence, not this node's: the charger's WebSocket is held by node-b."""
    with site.app_context():
        a_charge_point(
            charge_point_id="CP-THERE", connectors=1, last_seen_at=datetime(2026, 1, 1, tzinfo=UTC)
        )
        a_charge_point(
            charge_point_id="CP-NOWHERE", connectors=1, last_seen_at=datetime(2026, 1, 1, tzinfo=UTC)
        )
        connections("CP-THERE", node_id="node-b", since=datetime(2026, 7, 1, 10, 0, tzinfo=UTC))
    client = site.test_client()
    sign_in(client, "ops@example.test")
    page = client.get("/chargers/CP-THERE").data.decode()
    assert (
        '<dd id="connection"><span class="dot on"></span> online since 2026-07-01 10:00:00 UTC on node-b'
        in page
    )
    assert 'data-charger="CP-THERE" data-connector="1"' in page
    assert (
        '<dd id="connection"><span class="dot"></span> offline'
        in client.get("/chargers/CP-NOWHERE").data.decode()
    )
    listing = client.get("/chargers?connection=online").data.decode()
    assert 'href="/chargers/CP-THERE"' in listing and "CP-NOWHERE" not in listing
    assert '<span class="dot on"></span> online' in listing
    overview = client.get("/").data.decode()
    assert re.search(r'class="connector status-Unavailable online"\s+data-charger="CP-THERE"', overview)
    assert re.search(r'class="connector status-Unavailable offline"\s+data-charger="CP-NOWHERE"', overview)
    assert '<span class="value" data-figure="online">1</span><span class="of">of 2</span>' in overview
    assert "<b>CP-NOWHERE</b> offline for more than" in overview and "<b>CP-THERE</b> offline" not in overview


def test_a_command_to_an_offline_charger_shows_why(site, operator):
    with site.app_context():
        a_charge_point(charge_point_id="CP-GONE")
    client = site.test_client()
    page = client.get("/login")
    sign_in(client, "ops@example.test")
    token = csrf_of(client.get("/chargers/CP-GONE").data)
    reply = client.post(
        "/chargers/CP-GONE/commands", data={"csrf_token": token, "action": "Reset", "type": "Soft"}
    ).data.decode()
    assert "charge point &#39;CP-GONE&#39; is not connected" in reply
    invalid = client.post(
        "/chargers/CP-GONE/commands",
        data={"csrf_token": token, "action": "RemoteStopTransaction", "transactionId": "twelve"},
    ).data.decode()
    assert "<code>transactionId</code>: a whole number" in invalid
    assert page.status_code == 200


@pytest.mark.parametrize("action", forms.ACTIONS)
def test_every_csms_action_has_a_form_built_from_its_schema(action):
    schema = request_schema(action)
    fields = forms.fields_for(action)
    assert {field.name for field in fields} == set(schema.get("properties", {}))
    assert [field.name for field in fields if field.required] == [
        name for name in schema.get("properties", {}) if name in schema.get("required", ())
    ]


@pytest.mark.parametrize(
    ("action", "form", "payload"),
    [
        (
            "RemoteStartTransaction",
            {"idTag": "TAG-1", "connectorId": "2"},
            {"idTag": "TAG-1", "connectorId": 2},
        ),
        ("RemoteStartTransaction", {"idTag": "TAG-1", "connectorId": ""}, {"idTag": "TAG-1"}),
        ("Reset", {"type": "Hard"}, {"type": "Hard"}),
        ("ClearCache", {}, {}),
        ("GetConfiguration", {"key": '["HeartbeatInterval"]'}, {"key": ["HeartbeatInterval"]}),
        (
            "GetDiagnostics",
            {"location": "ftp://logs.example/", "retries": "3", "startTime": "2026-12-01T00:00:00Z"},
            {"location": "ftp://logs.example/", "retries": 3, "startTime": "2026-12-01T00:00:00Z"},
        ),
    ],
)
def test_a_form_becomes_the_payload_the_gateway_validates(action, form, payload):
    built = forms.payload_from(action, MultiDict(form))
    assert built == payload
    validate_request(action, built)


@pytest.mark.parametrize(
    ("action", "form", "problems"),
    [
        ("RemoteStartTransaction", {}, {"idTag": "required"}),
        ("RemoteStopTransaction", {"transactionId": "x"}, {"transactionId": "a whole number"}),
        (
            "GetConfiguration",
            {"key": "[oops"},
            {"key": "not JSON: Expecting value: line 1 column 2 (char 1)"},
        ),
    ],
)
def test_a_form_with_bad_fields_names_them(action, form, problems):
    with pytest.raises(InvalidInput) as refused:
        forms.payload_from(action, MultiDict(form))
    assert refused.value.details == problems


def test_an_unknown_action_has_no_form():
    with pytest.raises(InvalidInput, match="not a CSMS-initiated"):
        forms.fields_for("BootNotification")


def test_the_analytics_page_shows_the_report_of_the_range(site, operator):
    with site.app_context():
        point = a_charge_point(charge_point_id="CP-STATS", connectors=1)
        a_transaction(
            point,
            started_at=datetime(2026, 11, 2, 10, tzinfo=UTC),
            stopped_at=datetime(2026, 11, 2, 16, tzinfo=UTC),
            energy_wh=12_345,
            state="stopped",
        )
    client = site.test_client()
    sign_in(client, "ops@example.test")
    html = client.get("/analytics?from=2026-11-01&to=2026-11-03&groupBy=day").data.decode()
    assert '<span class="value" id="total-energy">12.3</span>' in html
    row = "<td>2026-11-02</td><td>12.345</td><td>1</td><td>0.00</td>\n      <td>25.0 %</td><td>1</td>"
    assert row in html
    assert '"labels": ["2026-11-01", "2026-11-02", "2026-11-03"]' in html
    refused = client.get("/analytics?from=2026-11-05&to=2026-11-01").data.decode()
    assert "`to` must be after `from`" in refused.replace("&#96;", "`")


def _sessions_fixture():
    """Two chargers, three transactions (one running), one paid app session."""
    a = a_charge_point(charge_point_id="CP-H1", connectors=2)
    b = a_charge_point(charge_point_id="CP-H2", connectors=1)
    paid = a_transaction(
        a,
        id_tag="APP-ADA",
        started_at=datetime(2026, 11, 2, 10, tzinfo=UTC),
        stopped_at=datetime(2026, 11, 2, 11, tzinfo=UTC),
        meter_start_wh=100,
        meter_stop_wh=7600,
        energy_wh=7500,
        state="stopped",
        stop_reason="Remote",
    )
    a_transaction(
        b,
        id_tag="RFID-9",
        started_at=datetime(2026, 11, 3, 8, tzinfo=UTC),
        meter_start_wh=0,
        meter_last_wh=250,
    )
    a_transaction(
        a,
        connector_id=2,
        id_tag="rfid-9",
        started_at=datetime(2026, 10, 30, tzinfo=UTC),
        energy_wh=10,
        state="stopped",
    )
    ada = users.create_user("ada@example.test", PASSWORD, id_tag="APP-ADA")
    db.session.add(
        ChargingSession(
            user_id=ada.id,
            charge_point_id=a.id,
            connector_id=1,
            id_tag="APP-ADA",
            transaction_id=paid.id,
            state="completed",
            currency="EUR",
            prepaid_minor=1000,
            cost_minor=345,
        )
    )
    db.session.commit()
    return paid


def test_the_history_filters(any_db_app):
    paid = _sessions_fixture()

    def ids(**filters) -> list[str]:
        rows, total = history.search(history.Filters(**filters))
        assert total == len(rows)
        return [(row.charge_point_id, row.transaction.id_tag) for row in rows]

    assert ids() == [("CP-H1", "rfid-9"), ("CP-H2", "RFID-9"), ("CP-H1", "APP-ADA")]
    assert ids(id_tag="RFID-9") == [("CP-H1", "rfid-9"), ("CP-H2", "RFID-9")]  # case-insensitive
    assert ids(customer="ada@") == [("CP-H1", "APP-ADA")]
    assert ids(state="running") == [("CP-H2", "RFID-9")]
    assert ids(charge_point_id="CP-H1", state="stopped") == [("CP-H1", "rfid-9"), ("CP-H1", "APP-ADA")]
    november = {"since": datetime(2026, 11, 1, tzinfo=UTC), "until": datetime(2026, 11, 3, tzinfo=UTC)}
    assert ids(**november) == [("CP-H1", "APP-ADA")]
    row = history.one(paid.id)
    assert (row.customer, row.cost_minor, row.currency, row.energy_wh) == (
        "ada@example.test",
        345,
        "EUR",
        7500,
    )


def test_the_transactions_page_and_its_csv_export(site, operator):
    with site.app_context():
        paid = _sessions_fixture()
        paid_id = paid.id
    client = site.test_client()
    sign_in(client, "ops@example.test")
    html = client.get("/transactions?customer=ada").data.decode()
    assert "1 transaction<" in html and "ada@example.test" in html and "3.45 EUR" in html
    export = client.get("/transactions?chargePointId=CP-H1&format=csv")
    assert export.mimetype == "text/csv"
    assert export.headers["Content-Disposition"].startswith('attachment; filename="transactions-')
    lines = export.data.decode().splitlines()
    assert lines[0] == (
        "transactionId,chargePointId,connectorId,idTag,customer,state,startedAt,stoppedAt,"
        "meterStartWh,meterStopWh,energyWh,cost,currency,stopReason"
    )
    assert lines[2] == (
        f"{paid_id},CP-H1,1,APP-ADA,ada@example.test,stopped,2026-11-02T10:00:00+00:00,"
        "2026-11-02T11:00:00+00:00,100,7600,7500,3.45,EUR,Remote"
    )
    assert len(lines) == 3
    page = client.get(f"/transactions/{paid_id}").data.decode()
    assert '<dd id="energy">7500 Wh</dd>' in page and "No sample was reported." in page
    assert client.get("/transactions/999999").status_code == 404
    assert client.get(f"/transactions/{10**30}").status_code == 404  # beyond any id column, not a 500
    assert client.get("/transactions?from=0001-01-01&to=9999-12-31").status_code == 200  # ignored, not a 500
    assert client.get("/analytics?from=0001-01-01&to=9999-12-31").status_code == 200


def test_customers_are_found_by_email_or_id_tag(any_db_app):
    ada = users.create_user("ada@example.test", PASSWORD, id_tag="ADA-1")
    users.create_user("bob@example.test", PASSWORD, id_tag="BOB-1")
    users.create_user("ops@example.test", PASSWORD, role="operator")
    assert [row.user.email for row in customers.search()[0]] == ["ada@example.test", "bob@example.test"]
    assert [row.user.email for row in customers.search("ada-1")[0]] == ["ada@example.test"]
    assert [row.user.email for row in customers.search("BOB@")[0]] == ["bob@example.test"]
    [listed], total = customers.search("ada")
    assert (total, listed.id_tags, listed.wallet.available_minor) == (1, ["ADA-1"], 0)
    wallet.top_up(listed.wallet.id, 2500, reference="pay-1")
    found = customers.account(ada.id)
    assert [(e.kind, e.amount_minor) for e in found.ledger] == [("topup", 2500)]
    assert [t.id_tag for t in found.id_tags] == ["ADA-1"]


def test_the_customer_pages(site, operator):
    with site.app_context():
        ada = users.create_user("ada@example.test", PASSWORD, id_tag="ADA-1")
        ada_id = ada.id
        wallet.top_up(
            db.session.scalar(select(Wallet.id).where(Wallet.user_id == ada_id)), 1250, reference="p-1"
        )
    client = site.test_client()
    sign_in(client, "ops@example.test")
    listing = client.get("/customers?q=ADA-1").data.decode()
    assert "1 customer<" in listing and f'href="/customers/{ada_id}"' in listing and "12.50 EUR" in listing
    page = client.get(f"/customers/{ada_id}").data.decode()
    assert '<dd id="available">12.50 EUR</dd>' in page
    assert "<td>topup</td><td>12.50 EUR</td>" in page
    assert client.get(f"/customers/{operator}").status_code == 404  # operators are not customers
    assert client.get(f"/customers/{10**30}").status_code == 404


def test_stations_and_tariffs_are_created_edited_and_deleted_through_forms(site, operator):
    client = site.test_client()
    sign_in(client, "ops@example.test")
    token = csrf_of(client.get("/stations").data)
    created = client.post("/stations", data={"csrf_token": token, "name": "North", "address": "1 Road"})
    assert (created.status_code, created.headers["Location"]) == (302, "/stations")
    listing = client.get("/stations").data.decode()
    assert "Station &#39;North&#39; created." in listing and ">North</a>" in listing
    with site.app_context():
        station = db.session.scalar(select(Station))
        station_id, events = station.id, db.session.scalars(select(CmsEvent.type)).all()
    bad = client.post(f"/stations/{station_id}", data={"csrf_token": token, "name": "", "latitude": "95"})
    assert bad.status_code == 422
    assert (
        "Missing data for required field." in bad.data.decode() or "Shorter than minimum" in bad.data.decode()
    )
    saved = client.post(
        f"/stations/{station_id}", data={"csrf_token": token, "name": "North 2", "address": ""}
    )
    assert saved.status_code == 302
    with site.app_context():
        station = db.session.get(Station, station_id)
        assert (station.name, station.address) == ("North 2", None)

    tariff = client.post(
        "/tariffs",
        data={
            "csrf_token": token,
            "name": "Std",
            "currency": "EUR",
            "energyPrice": "0.35",
            "isDefault": "on",
        },
    )
    assert tariff.status_code == 302
    refused = client.post(
        "/tariffs", data={"csrf_token": token, "name": "Bad", "currency": "euro", "energyPrice": "x"}
    )
    assert refused.status_code == 422 and "ISO 4217 code, e.g. EUR" in refused.data.decode()
    with site.app_context():
        saved_tariff = db.session.scalar(select(Tariff))
        assert (saved_tariff.energy_price, saved_tariff.is_default) == (Decimal("0.3500"), True)
        tariff_id = saved_tariff.id

    # a charge point with its station and tariff: the key is shown once
    registered = client.post(
        "/points/new",
        data={
            "csrf_token": token,
            "chargePointId": "CP-FORM",
            "connectors": "2",
            "stationId": str(station_id),
            "tariffId": str(tariff_id),
            "registrationStatus": "Accepted",
        },
    ).data.decode()
    key = re.search(r'<code id="auth-key">([^<]+)</code>', registered).group(1)
    with site.app_context():
        point = fleet.by_id("CP-FORM")
        assert (point.station_id, point.tariff_id, len(point.connectors)) == (station_id, tariff_id, 3)
        assert credentials.verify_key(key, point.auth_key_hash)
    duplicate = client.post("/points/new", data={"csrf_token": token, "chargePointId": "CP-FORM"})
    assert duplicate.status_code == 409 and "already exists" in duplicate.data.decode()

    deleted = client.post(f"/stations/{station_id}/delete", data={"csrf_token": token})
    assert deleted.headers["Location"] == "/stations"
    with site.app_context():
        assert db.session.get(Station, station_id) is None
        assert fleet.by_id("CP-FORM").station_id is None  # its charge points stay, without a station
    assert events == []  # the embedded worker is not running here: the announcements wait in the outbox
    with site.app_context():
        assert db.session.scalar(select(func.count()).select_from(OutboxMessage)) >= 5


def test_the_overview_alerts_on_dead_letters(site, operator):
    broker = site.extensions["dramatiq"]
    poison = dramatiq.Message(
        queue_name="transactions",
        actor_name="process_transaction_messages",
        args=([],),
        kwargs={},
        options={},
    )
    broker.dead_letters_by_queue["transactions"].append(poison)
    client = site.test_client()
    sign_in(client, "ops@example.test")
    html = client.get("/").data.decode()
    assert "1 message(s) in <code>transactions.XQ</code>: they failed every retry" in html


def test_lists_page_through_their_matches(site, operator):
    with site.app_context():
        for n in range(51):
            db.session.add(User(email=f"c{n:02d}@example.test", password_hash="x", role="customer"))
        db.session.commit()
    client = site.test_client()
    sign_in(client, "ops@example.test")
    first = client.get("/customers?q=example").data.decode()
    assert "page 1 of 2" in first and 'href="/customers?q=example&amp;page=2">Next →</a>' in first
    second = client.get("/customers?q=example&page=2").data.decode()
    assert 'href="/customers?q=example&amp;page=1">← Previous</a>' in second and "Next →" not in second
