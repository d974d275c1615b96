"""Analytics per day, station and charger, in SQL on SQLite and PostgreSQL: exact figures for a
network whose transactions cross midnight, start before the window and are still running."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from csms.extensions import db
from csms.models import ChargingSession
from csms.services import analytics
from csms.services.errors import InvalidInput
from tests.builders import a_charge_point, a_station, a_transaction, a_user
from tests.test_api import auth, token_for

START = datetime(2026, 11, 1, tzinfo=UTC)
END = datetime(2026, 11, 3, tzinfo=UTC)
NOW = datetime(2026, 11, 5, tzinfo=UTC)


def at(day: int, hour: int) -> datetime:
    return datetime(2026, 10 if day == 31 else 11, day, hour, tzinfo=UTC)


@pytest.fixture
def network(any_db_app):
    north = a_station(name="North")
    a = a_charge_point(charge_point_id="CP-A", connectors=2, station_id=north.id)
    b = a_charge_point(charge_point_id="CP-B", connectors=1)
    paid = a_transaction(a, started_at=at(1, 10), stopped_at=at(1, 12), energy_wh=5000, state="stopped")
    a_transaction(
        a, connector_id=2, started_at=at(1, 23), stopped_at=at(2, 1), energy_wh=1000, state="stopped"
    )
    a_transaction(b, started_at=at(31, 22), stopped_at=at(1, 2), energy_wh=400, state="stopped")
    a_transaction(b, started_at=at(2, 20), meter_start_wh=0, meter_last_wh=700)  # still running
    db.session.add(
        ChargingSession(
            user_id=a_user().id,
            charge_point_id=a.id,
            connector_id=1,
            id_tag="TAG",
            transaction_id=paid.id,
            state="completed",
            currency="EUR",
            prepaid_minor=1000,
            cost_minor=300,
        )
    )
    db.session.commit()
    return north


def figures(groups: list[analytics.Group]) -> list[tuple]:
    return [(g.key, g.label, g.sessions, g.energy_wh, g.revenue_minor, g.utilization) for g in groups]


def test_per_day(network):
    # 3 connectors; day 1: 2 h + 1 h + 2 h occupied, day 2: 1 h + 4 h (running until the window ends)
    assert figures(analytics.report(START, END, "day", NOW)) == [
        ("2026-11-01", "2026-11-01", 2, 6000, {"EUR": 300}, round(5 * 3600 / (3 * 86400), 4)),
        ("2026-11-02", "2026-11-02", 1, 700, {}, round(5 * 3600 / (3 * 86400), 4)),
    ]


def test_per_charger(network):
    two_days = 2 * 86400
    assert figures(analytics.report(START, END, "chargePoint", NOW)) == [
        ("CP-A", "CP-A", 2, 6000, {"EUR": 300}, round(4 * 3600 / (2 * two_days), 4)),
        ("CP-B", "CP-B", 1, 700, {}, round(6 * 3600 / two_days, 4)),
    ]


def test_per_station(network):
    two_days = 2 * 86400
    assert figures(analytics.report(START, END, "station", NOW)) == [
        (str(network.id), "North", 2, 6000, {"EUR": 300}, round(4 * 3600 / (2 * two_days), 4)),
        ("unassigned", "No station", 1, 700, {}, round(6 * 3600 / two_days, 4)),
    ]


def test_a_running_transaction_counts_until_now(network):
    window_end = datetime(2026, 11, 2, 22, tzinfo=UTC)  # "now" is 22:00: the running one has 2 h
    [_, b] = analytics.report(datetime(2026, 11, 2, tzinfo=UTC), window_end, "chargePoint", window_end)
    assert (b.key, b.occupied_seconds, b.sessions) == ("CP-B", 2 * 3600, 1)


@pytest.mark.parametrize(
    ("start", "end", "group_by", "code"),
    [
        (END, START, "day", "invalid_period"),
        (START, START, "day", "invalid_period"),
        (START, datetime(2028, 1, 1, tzinfo=UTC), "day", "invalid_period"),
        (START, END, "week", "invalid_grouping"),
        (datetime(1, 1, 1, tzinfo=UTC), END, "day", "invalid_period"),
    ],
)
def test_bad_periods_and_groupings_are_refused(app, start, end, group_by, code):
    with pytest.raises(InvalidInput) as refused:
        analytics.report(*analytics.period(start, end, NOW), group_by, NOW)
    assert refused.value.code == code


def test_the_rest_report(network, any_db_app):
    client = any_db_app.test_client()
    operator = auth(token_for(client, "op@example.test", "operator"))
    query = "from=2026-11-01T00:00:00Z&to=2026-11-03T00:00:00%2B00:00&groupBy=chargePoint"
    response = client.get(f"/api/cms/analytics?{query}", headers=operator)
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {
        "from": "2026-11-01T00:00:00+00:00",
        "to": "2026-11-03T00:00:00+00:00",
        "groupBy": "chargePoint",
        "groups": [
            {
                "key": "CP-A",
                "label": "CP-A",
                "connectors": 2,
                "energyWh": 6000,
                "sessions": 2,
                "revenue": {"EUR": "3.00"},
                "unbilled": {},
                "unbilledWh": 0,
                "utilization": 0.0417,
            },
            {
                "key": "CP-B",
                "label": "CP-B",
                "connectors": 1,
                "energyWh": 700,
                "sessions": 1,
                "revenue": {},
                "unbilled": {},
                "unbilledWh": 0,
                "utilization": 0.125,
            },
        ],
    }
    refused = client.get("/api/cms/analytics?groupBy=week", headers=operator)
    assert (refused.status_code, refused.get_json()["error"]["code"]) == (422, "validation_error")
    backwards = client.get(
        "/api/cms/analytics?from=2026-11-03T00:00:00Z&to=2026-11-01T00:00:00Z", headers=operator
    )
    assert (backwards.status_code, backwards.get_json()["error"]["code"]) == (422, "invalid_period")
    for far in ("to=0001-01-01T02:00:02%2B01:00", "from=9999-12-31T23:59:59Z"):  # found by Schemathesis
        refused = client.get(f"/api/cms/analytics?{far}", headers=operator)
        assert (refused.status_code, refused.get_json()["error"]["code"]) == (422, "invalid_period")
    customer = auth(token_for(client, "cu@example.test"))
    assert client.get("/api/cms/analytics", headers=customer).status_code == 403


def test_the_default_period_is_the_last_thirty_days(app):
    client = app.test_client()
    operator = auth(token_for(client, "op@example.test", "operator"))
    body = client.get("/api/cms/analytics", headers=operator).get_json()
    start, end = datetime.fromisoformat(body["from"]), datetime.fromisoformat(body["to"])
    assert end - start == timedelta(days=30)
    assert len(body["groups"]) == 30
