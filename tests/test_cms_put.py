"""`PUT` beside `PATCH` on stations, charge points and tariffs, as the replaced system's CMS tools send
it: a full update validated by the create schema (a field left out goes back to its default, a
required one missing is 422), announced as the same `cms.*.updated` event as a `PATCH`."""

from __future__ import annotations

import json

import pytest

from csms.extensions import db
from csms.models import ChargePoint, OutboxMessage
from csms.services import credentials
from tests.test_api import auth, error_of, token_for


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def operator(client):
    return auth(token_for(client, "put-op@example.test", "operator"))


def announced() -> list[dict]:
    """The `cms.*` events parked for the `cms_events` actor (no worker runs here), oldest first."""
    rows = db.session.query(OutboxMessage).filter_by(queue_name="cms_events").order_by(OutboxMessage.id)
    return [event for row in rows for event in json.loads(row.body)["args"][0]]


def test_put_replaces_a_station_and_announces_the_update(client, operator):
    created = client.post(
        "/api/cms/stations",
        json={"name": "Depot", "address": "1 Road", "latitude": "52.5", "longitude": 13.4},
        headers=operator,
    ).get_json()
    replaced = client.put(f"/api/cms/stations/{created['id']}", json={"name": "Depot 2"}, headers=operator)
    assert replaced.status_code == 200
    body = replaced.get_json()
    assert {k: body[k] for k in ("id", "name", "address", "latitude", "longitude")} == {
        "id": created["id"],
        "name": "Depot 2",
        "address": None,
        "latitude": None,
        "longitude": None,
    }
    assert client.get(f"/api/cms/stations/{created['id']}", headers=operator).get_json() == body
    updated = announced()[-1]
    assert (updated["type"], updated["entity_id"], updated["payload"]) == (
        "cms.station.updated",
        str(created["id"]),
        body,
    )


def test_put_replaces_a_tariff_with_the_create_schema_defaults(client, operator):
    created = client.post(
        "/api/cms/tariffs",
        json={"name": "Std", "currency": "EUR", "energyPrice": "0.3", "timePrice": "1.5", "sessionFee": 1},
        headers=operator,
    ).get_json()
    body = {"name": "Std", "currency": "CHF", "energyPrice": "0.4"}
    replaced = client.put(f"/api/cms/tariffs/{created['id']}", json=body, headers=operator)
    assert replaced.status_code == 200
    tariff = replaced.get_json()
    assert {k: tariff[k] for k in ("currency", "energyPrice", "timePrice", "sessionFee", "taxPercent")} == {
        "currency": "CHF",
        "energyPrice": "0.4000",
        "timePrice": None,
        "sessionFee": "0.0000",
        "taxPercent": "0.00",
    }
    assert announced()[-1]["type"] == "cms.tariff.updated"


def test_put_replaces_a_charge_point_and_keeps_its_key(client, operator, app):
    station = client.post("/api/cms/stations", json={"name": "S"}, headers=operator).get_json()
    created = client.post(
        "/api/cms/points",
        json={"chargePointId": "PUT-1", "connectors": 2, "stationId": station["id"], "securityProfile": 2},
        headers=operator,
    ).get_json()
    replaced = client.put(
        "/api/cms/points/PUT-1",
        json={"chargePointId": "PUT-1", "registrationStatus": "Pending", "securityProfile": 0},
        headers=operator,
    )
    assert replaced.status_code == 200
    point = replaced.get_json()
    assert (point["stationId"], point["registrationStatus"], point["securityProfile"]) == (None, "Pending", 0)
    assert [c["connectorId"] for c in point["connectors"]] == [1, 2]  # the charger's own, kept
    stored = db.session.scalar(db.select(ChargePoint).filter_by(charge_point_id="PUT-1"))
    assert credentials.verify_key(created["authKey"], stored.auth_key_hash)  # a key left out is kept
    updated = announced()[-1]
    assert (updated["type"], updated["entity_id"], updated["payload"]) == (
        "cms.point.updated",
        "PUT-1",
        {"changed": ["registration_status", "security_profile", "station_id", "tariff_id"]},
    )
    rotated = client.put(
        "/api/cms/points/PUT-1", json={"chargePointId": "PUT-1", "authKey": "k" * 20}, headers=operator
    )
    assert rotated.get_json()["securityProfile"] == 1  # back to the default
    db.session.refresh(stored)
    assert credentials.verify_key("k" * 20, stored.auth_key_hash)
    assert announced()[-1]["payload"]["changed"][-1] == "authKey"


@pytest.mark.parametrize(
    ("path", "body", "missing"),
    [
        ("/api/cms/stations/{station}", {"address": "2 Road"}, "name"),
        ("/api/cms/tariffs/{tariff}", {"name": "Std", "currency": "EUR"}, "energyPrice"),
        ("/api/cms/points/PUT-2", {"registrationStatus": "Accepted"}, "chargePointId"),
    ],
)
def test_put_refuses_a_partial_body_and_changes_nothing(client, operator, path, body, missing):
    station = client.post("/api/cms/stations", json={"name": "S", "address": "1 Road"}, headers=operator)
    tariff = client.post(
        "/api/cms/tariffs", json={"name": "T", "currency": "EUR", "energyPrice": "0.3"}, headers=operator
    )
    client.post("/api/cms/points", json={"chargePointId": "PUT-2"}, headers=operator)
    url = path.format(station=station.get_json()["id"], tariff=tariff.get_json()["id"])
    before, events = client.get(url, headers=operator).get_json(), len(announced())
    response = client.put(url, json=body, headers=operator)
    assert response.status_code == 422
    assert missing in json.dumps(error_of(response)["details"])
    assert client.get(url, headers=operator).get_json() == before
    assert len(announced()) == events
    assert client.patch(url, json=body, headers=operator).status_code == 200  # PATCH stays partial


def test_put_refuses_bad_values_and_another_identity(client, operator):
    client.post("/api/cms/points", json={"chargePointId": "PUT-3"}, headers=operator)
    moved = client.put("/api/cms/points/PUT-3", json={"chargePointId": "PUT-4"}, headers=operator)
    assert moved.status_code == 422 and error_of(moved)["code"] == "charge_point_id_mismatch"
    for profile in (3, -1, "2a", None):
        body = {"chargePointId": "PUT-3", "securityProfile": profile}
        response = client.put("/api/cms/points/PUT-3", json=body, headers=operator)
        assert response.status_code == 422, profile
    unknown = client.put("/api/cms/points/NOPE", json={"chargePointId": "NOPE"}, headers=operator)
    assert unknown.status_code == 404
    assert client.put("/api/cms/stations/999", json={"name": "X"}, headers=operator).status_code == 404
    assert client.put("/api/cms/stations/1", json={"name": "X"}).status_code == 401


def test_put_is_in_the_openapi_document(client):
    paths = client.get("/api/openapi.json").get_json()["paths"]
    point = "/api/cms/points/{charge_point_id}"
    for path in ("/api/cms/stations/{item_id}", "/api/cms/tariffs/{item_id}", point):
        assert {"put", "patch"} <= set(paths[path]), path
    body = paths[point]["put"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["$ref"].endswith("/PointReplace")
