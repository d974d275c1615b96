"""The REST API in process (embedded mode): auth and roles, wallet and top-up, CMS resources, the
error envelope and the OpenAPI document. Charger round trips are in test_api_charging.py."""

from __future__ import annotations

from datetime import timedelta

import pytest

from csms.extensions import db
from csms.models import CmsEvent, OutboxMessage
from csms.services import tokens, users


@pytest.fixture
def client(app):
    return app.test_client()


def token_for(client, email: str, role: str = "customer") -> str:
    users.create_user(email, "password-123", role=role, id_tag=None)
    response = client.post("/api/auth/login", json={"email": email, "password": "password-123"})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["access_token"]


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def operator(client):
    return auth(token_for(client, "op@example.test", "operator"))


@pytest.fixture
def customer(client):
    response = client.post(
        "/api/auth/register", json={"email": "cu@example.test", "password": "password-123"}
    )
    assert response.status_code == 201
    return auth(response.get_json()["access_token"])


def error_of(response) -> dict:
    body = response.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    return body["error"]


# --- auth ----------------------------------------------------------------------------------------


def test_register_gives_a_customer_token_with_a_wallet(client):
    response = client.post(
        "/api/auth/register", json={"email": "New@Example.test", "password": "password-123"}
    )
    body = response.get_json()
    assert response.status_code == 201 and body["role"] == "customer" and body["token_type"] == "Bearer"
    wallet = client.get("/api/user/wallet", headers=auth(body["access_token"])).get_json()
    assert (wallet["currency"], wallet["available"], wallet["held"], wallet["ledger"]) == (
        "EUR",
        "0.00",
        "0.00",
        [],
    )


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"email": "x@example.test", "password": "short"}, 422, "validation_error"),
        ({"email": "not-an-email", "password": "password-123"}, 422, "invalid_email"),
        ({"password": "password-123"}, 422, "validation_error"),
    ],
)
def test_register_refuses_bad_input(client, body, status, code):
    response = client.post("/api/auth/register", json=body)
    assert response.status_code == status
    assert error_of(response)["code"] == code


def test_register_twice_conflicts(client, customer):
    response = client.post(
        "/api/auth/register", json={"email": "cu@example.test", "password": "password-123"}
    )
    assert response.status_code == 409 and error_of(response)["code"] == "user_exists"


def test_wrong_password_and_rate_limit(client, customer):
    for _ in range(5):
        response = client.post(
            "/api/auth/login", json={"email": "cu@example.test", "password": "wrong-password"}
        )
        assert response.status_code == 401 and error_of(response)["code"] == "invalid_credentials"
    limited = client.post("/api/auth/login", json={"email": "cu@example.test", "password": "password-123"})
    assert limited.status_code == 429 and limited.get_json() == {
        "error": {
            "code": "too_many_requests",
            "message": "too many failed logins; retry in 1s",
            "details": {"retryAfter": 1},
        }
    }


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Basic abc", "Bearer not-a-jwt", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.forged"],
)
def test_missing_or_forged_tokens_are_401(client, header):
    response = client.get("/api/user/wallet", headers={"Authorization": header} if header else {})
    assert response.status_code == 401


def test_expired_token_is_401(app, client, customer):
    expired = tokens.issue(tokens.Identity(1, "customer"), app.config["SECRET_KEY"], timedelta(seconds=-1))
    response = client.get("/api/user/wallet", headers=auth(expired))
    assert response.status_code == 401 and error_of(response)["code"] == "token_expired"


def test_wrong_role_is_403(client, customer, operator):
    assert client.get("/api/cms/stations", headers=customer).status_code == 403
    assert client.get("/api/user/wallet", headers=operator).status_code == 403


# --- wallet --------------------------------------------------------------------------------------


def test_top_up_with_the_development_provider(client, customer):
    response = client.post(
        "/api/user/wallet/topup", json={"amount": "12.34", "idempotencyKey": "k1"}, headers=customer
    )
    assert response.status_code == 200
    assert response.get_json()["available"] == "12.34"
    again = client.post(
        "/api/user/wallet/topup", json={"amount": "12.34", "idempotencyKey": "k1"}, headers=customer
    )
    assert again.get_json()["available"] == "12.34"  # the same payment is credited once
    more = client.post("/api/user/wallet/topup", json={"amount": 5}, headers=customer).get_json()
    assert more["available"] == "17.34"
    assert [(e["kind"], e["amount"]) for e in more["ledger"]] == [("topup", "5.00"), ("topup", "12.34")]


@pytest.mark.parametrize(
    "amount", ["1.234", "-5", "0", "abc", True, None, 0.1 + 0.2, "999999999999999999999999999999", "1e16"]
)
def test_top_up_refuses_bad_amounts(client, customer, amount):
    response = client.post("/api/user/wallet/topup", json={"amount": amount}, headers=customer)
    assert response.status_code == 422, response.get_json()
    assert client.get("/api/user/wallet", headers=customer).get_json()["available"] == "0.00"


def test_top_up_needs_a_provider_in_production(make_app):
    app = make_app(PAYMENT_PROVIDER="none")
    client = app.test_client()
    with app.app_context():
        token = client.post(
            "/api/auth/register", json={"email": "p@example.test", "password": "password-123"}
        )
        response = client.post(
            "/api/user/wallet/topup", json={"amount": "1"}, headers=auth(token.get_json()["access_token"])
        )
    assert response.status_code == 409 and error_of(response)["code"] == "payments_unavailable"


# --- CMS -----------------------------------------------------------------------------------------


def test_station_crud_announces_each_change(client, operator):
    created = client.post(
        "/api/cms/stations", json={"name": "Depot", "latitude": "52.5", "longitude": 13.4}, headers=operator
    )
    assert created.status_code == 201
    station = created.get_json()
    assert (station["name"], station["latitude"], station["longitude"]) == ("Depot", "52.500000", "13.400000")
    sid = station["id"]
    assert (
        client.patch(f"/api/cms/stations/{sid}", json={"address": "1 Road"}, headers=operator).get_json()[
            "address"
        ]
        == "1 Road"
    )
    listed = client.get("/api/cms/stations?q=dep", headers=operator).get_json()
    assert listed["total"] == 1 and listed["items"][0]["id"] == sid
    assert client.delete(f"/api/cms/stations/{sid}", headers=operator).status_code == 204
    assert client.get(f"/api/cms/stations/{sid}", headers=operator).status_code == 404
    parked = db.session.query(OutboxMessage).count()  # the events, waiting for the (not running) worker
    assert parked == 3


def test_tariff_validation_and_single_default(client, operator):
    body = {"name": "Std", "currency": "EUR", "energyPrice": "0.3456", "taxPercent": 19, "isDefault": True}
    created = client.post("/api/cms/tariffs", json=body, headers=operator)
    assert created.status_code == 201
    assert created.get_json()["energyPrice"] == "0.3456"
    second_default = client.post("/api/cms/tariffs", json={**body, "name": "Other"}, headers=operator)
    assert second_default.status_code == 409
    for bad in ({**body, "currency": "euro"}, {**body, "energyPrice": "-1"}, {**body, "taxPercent": 101}):
        response = client.post("/api/cms/tariffs", json=bad, headers=operator)
        assert response.status_code == 422 and error_of(response)["details"]


def test_charge_point_lifecycle(client, operator):
    created = client.post(
        "/api/cms/points", json={"chargePointId": "API-1", "connectors": 2}, headers=operator
    )
    assert created.status_code == 201
    body = created.get_json()
    assert len(body["authKey"]) == 32 and body["registrationStatus"] == "Accepted"
    assert [c["connectorId"] for c in body["connectors"]] == [1, 2]
    assert body["connection"] == {
        "connected": False,
        "node": None,
        "since": None,
        "connectedSince": None,
        "lastMessageAt": None,
    }
    shown = client.get("/api/cms/points/API-1", headers=operator).get_json()
    assert "authKey" not in shown
    patched = client.patch("/api/cms/points/API-1", json={"registrationStatus": "Rejected"}, headers=operator)
    assert patched.get_json()["registrationStatus"] == "Rejected"
    assert (
        client.post("/api/cms/points", json={"chargePointId": "API-1"}, headers=operator).status_code == 409
    )
    assert (
        client.post("/api/cms/points", json={"chargePointId": "bad id"}, headers=operator).status_code == 422
    )
    assert client.patch("/api/cms/points/API-1", json={"tariffId": 999}, headers=operator).status_code == 404
    assert client.delete("/api/cms/points/API-1", headers=operator).status_code == 204
    assert client.get("/api/cms/points/API-1", headers=operator).status_code == 404


def test_records_are_paginated(client, operator):
    transactions = client.get("/api/cms/transactions?chargePointId=X&perPage=5", headers=operator).get_json()
    assert transactions == {"items": [], "total": 0, "page": 1, "perPage": 5}
    assert client.get("/api/cms/messages?perPage=0", headers=operator).status_code == 422


# --- errors and documentation ------------------------------------------------------------------


def test_every_error_is_the_json_envelope(client, customer):
    assert error_of(client.get("/api/nope"))["code"] == "not_found"
    assert error_of(client.delete("/api/user/wallet", headers=customer))["code"] == "method_not_allowed"
    bad_json = client.post("/api/auth/login", data="{", content_type="application/json")
    assert bad_json.status_code == 400 and error_of(bad_json)["code"] == "invalid_json"


def test_openapi_document(client):
    spec = client.get("/api/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    assert {"/api/user/charging/start", "/api/charger/command", "/api/cms/points/{charge_point_id}"} <= set(
        spec["paths"]
    )
    assert spec["components"]["schemas"]["StartCharging"]["required"] == ["amount", "connectorId", "deviceId"]


def test_cms_events_reach_the_actor(app, client, operator, worker):
    from csms.runtime import start_background

    stop = start_background(app)
    try:
        client.post("/api/cms/stations", json={"name": "Evented"}, headers=operator)
        from tests.support.processes import wait_until

        def stored():
            db.session.rollback()
            return db.session.query(CmsEvent).filter_by(type="cms.station.created").count() == 1

        assert wait_until(stored, timeout=10)
    finally:
        stop()
