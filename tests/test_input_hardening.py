"""No 500 from input (issue #14, findings 6 and 9): NUL characters and deep JSON are refused before
any route, races on unique values answer 409 or the original result, and an idempotencyKey reused
for another amount is a 409. On real PostgreSQL, which is where a NUL used to fail."""

from __future__ import annotations

import base64
import json
import threading
import urllib.error
import urllib.request

import pytest
from sqlalchemy import create_engine, text

from csms.config import normalize_database_url
from csms.request_guard import MAX_JSON_DEPTH
from csms.services import chargers, users
from tests.support.processes import web_process

NUL_REFUSED = {
    "code": "invalid_characters",
    "message": "the request contains a NUL character or an unpaired surrogate, which no field accepts",
}


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def pg_client(make_app, postgres_url):
    app = make_app(DATABASE_URL=postgres_url)  # with a login limiter of its own
    with app.app_context():
        users.create_user("op@example.test", "password-123", role="operator")
        chargers.register("CP-1", "cp-key-0123456789")
    client = app.test_client()
    tokens = {}
    for email, role in (("op@example.test", "operator"), ("cu@example.test", "customer")):
        if role == "customer":
            response = client.post("/api/auth/register", json={"email": email, "password": "password-123"})
        else:
            response = client.post("/api/auth/login", json={"email": email, "password": "password-123"})
        tokens[role] = auth(response.get_json()["access_token"])
    client.tokens = tokens
    return client


def _charger_upgrade(charge_point_id: str) -> dict:
    basic = base64.b64encode(f"{charge_point_id}:cp-key-0123456789".encode()).decode()
    return {
        "Authorization": f"Basic {basic}",
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Protocol": "ocpp1.6",
    }


# Finding 6: each place a NUL reached PostgreSQL and answered 500.
NUL_CASES = {
    "login email": (
        "post",
        "/api/auth/login",
        None,
        {"email": "a\x00@example.test", "password": "x" * 8},
        "json",
    ),
    "register email": (
        "post",
        "/api/auth/register",
        None,
        {"email": "b\x00@e.test", "password": "x" * 8},
        "json",
    ),
    "a JSON key": (
        "post",
        "/api/auth/login",
        None,
        {"email\x00": "a@example.test", "password": "x" * 8},
        "json",
    ),
    "?q=": ("get", "/api/cms/points?q=%00", "operator", None, "query"),
    "?chargePointId=": ("get", "/api/cms/transactions?chargePointId=CP%00", "operator", None, "query"),
    "a query key": ("get", "/api/cms/messages?a%00=1", "operator", None, "query"),
    "a path id": ("get", "/api/cms/points/CP%00", "operator", None, "path"),
    "a station name": ("post", "/api/cms/stations", "operator", {"name": "Depot\x00"}, "json"),
    "a deviceId": (
        "post",
        "/api/user/charging/start",
        "customer",
        {"deviceId": "CP-1\x00", "connectorId": 1, "amount": "5.00"},
        "json",
    ),
    "an unpaired surrogate": ("post", "/api/cms/stations", "operator", {"name": "Depot\ud800"}, "json"),
    "a form field": ("post", "/api/auth/login", None, {"email": "a\x00@e.test"}, "form"),
    "/healthz": ("get", "/healthz?probe=%00", None, None, "query"),
}


@pytest.mark.parametrize("case", NUL_CASES.values(), ids=NUL_CASES.keys())
def test_a_nul_character_is_refused_everywhere(pg_client, case):
    method, path, role, body, location = case
    headers = pg_client.tokens[role] if role else {}
    if location == "form":
        response = pg_client.post(path, data=body, headers=headers)
    elif body is not None:  # ensure_ascii keeps the surrogate as the escape a client would send
        response = pg_client.open(
            path, method=method, data=json.dumps(body), content_type="application/json", headers=headers
        )
    else:
        response = pg_client.open(path, method=method, headers=headers)
    assert response.status_code == 422, response.get_data(as_text=True)
    assert response.get_json() == {"error": {**NUL_REFUSED, "details": {"location": location}}}


def test_a_charger_id_with_nul_is_refused_before_the_upgrade(pg_client):
    """400 (RFC 6455 §4.2.2: a handshake the server will not take) with no WebSocket and no lookup;
    the refusals chargers already get are unchanged."""
    refused = pg_client.get("/ocpp/CP-1%00", headers=_charger_upgrade("CP-1\x00"))
    assert refused.status_code == 400
    assert refused.get_json() == {"error": {**NUL_REFUSED, "details": {"location": "path"}}}
    assert "Upgrade" not in refused.headers
    unknown = pg_client.get("/ocpp/CP-9", headers=_charger_upgrade("CP-9"))
    assert (unknown.status_code, unknown.get_json()["error"]["code"]) == (404, "unknown_charge_point")
    headers = _charger_upgrade("CP-1")
    del headers["Authorization"]
    anonymous = pg_client.get("/ocpp/CP-1", headers=headers)
    assert (anonymous.status_code, anonymous.get_json()["error"]["code"]) == (401, "unauthorized")


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize("body", [_nested(100_000), b'{"a":' * 100_000 + b"1" + b"}" * 100_000, _nested(65)])
def test_deep_json_is_refused(pg_client, body):
    """Finding 6: 100,000 nested arrays used to end in a RecursionError (500)."""
    response = pg_client.post("/api/auth/login", data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json() == {
        "error": {
            "code": "invalid_json",
            "message": f"the body is nested deeper than {MAX_JSON_DEPTH} levels",
            "details": {"maxDepth": MAX_JSON_DEPTH},
        }
    }


def test_json_at_the_depth_limit_reaches_the_schema(pg_client):
    response = pg_client.post(
        "/api/auth/login", data=_nested(MAX_JSON_DEPTH), content_type="application/json"
    )
    assert (response.status_code, response.get_json()["error"]["code"]) == (422, "validation_error")


def test_malformed_json_is_invalid_json(pg_client):
    response = pg_client.post("/api/auth/login", data=b'{"email": ', content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_json"
    assert response.get_json()["error"]["message"] == "the body is not valid JSON"


# Finding 9: a reused idempotencyKey.


def test_an_idempotency_key_reused_for_another_amount_is_a_conflict(pg_client):
    customer = pg_client.tokens["customer"]
    first = pg_client.post(
        "/api/user/wallet/topup", json={"amount": "10.00", "idempotencyKey": "k-1"}, headers=customer
    )
    assert first.status_code == 200 and first.get_json()["available"] == "10.00"
    replay = pg_client.post(
        "/api/user/wallet/topup", json={"amount": "10.00", "idempotencyKey": "k-1"}, headers=customer
    )
    assert (replay.status_code, replay.get_json()) == (200, first.get_json())

    reused = pg_client.post(
        "/api/user/wallet/topup", json={"amount": "25.00", "idempotencyKey": "k-1"}, headers=customer
    )
    assert reused.status_code == 409
    assert reused.get_json() == {
        "error": {
            "code": "idempotency_key_reused",
            "message": "this idempotency key was already used for a different top-up",
            "details": {"creditedAmount": "10.00", "requestedAmount": "25.00"},
        }
    }
    wallet = pg_client.get("/api/user/wallet", headers=customer).get_json()
    assert (wallet["available"], [(e["kind"], e["amount"]) for e in wallet["ledger"]]) == (
        "10.00",
        [("topup", "10.00")],
    )


# Finding 6, the races: real concurrency against a real web process on PostgreSQL.


def _post(base_url: str, path: str, body: dict, headers: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(
        base_url + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def _all_at_once(calls: list) -> list[tuple[int, dict]]:
    """Run the calls on threads released together; results in call order."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(index: int, call) -> None:
        barrier.wait(timeout=10)
        results[index] = call()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert all(result is not None for result in results), "a request did not finish"
    return results


@pytest.fixture
def web_on_postgres(postgres_databases, tmp_path):
    database_url = postgres_databases()
    env = {"CSMS_DATABASE_URL": database_url, "CSMS_INSTANCE_PATH": str(tmp_path), "CSMS_NODE_ID": "races"}
    engine = create_engine(normalize_database_url(database_url))
    with web_process(env, tmp_path) as web:
        yield web, engine
    engine.dispose()


@pytest.mark.slow
def test_parallel_registrations_and_top_ups_never_500(web_on_postgres):
    web, engine = web_on_postgres
    variants = [
        "".join(c.upper() if (i >> n) & 1 else c for n, c in enumerate("race@example.test"))
        for i in range(12)
    ]
    assert len(set(variants)) == 12
    registrations = _all_at_once(
        [
            lambda e=e: _post(web.base_url, "/api/auth/register", {"email": e, "password": "password-123"})
            for e in variants
        ]
    )
    statuses = sorted(status for status, _ in registrations)
    assert statuses == [201] + [409] * 11, registrations
    conflicts = {body["error"]["code"] for status, body in registrations if status == 409}
    assert conflicts == {"user_exists"}
    with engine.connect() as connection:
        assert connection.execute(text("SELECT email FROM users")).scalars().all() == ["race@example.test"]

    token = next(body["access_token"] for status, body in registrations if status == 201)
    top_up = {"amount": "7.50", "idempotencyKey": "once"}
    top_ups = _all_at_once(
        [lambda: _post(web.base_url, "/api/user/wallet/topup", top_up, auth(token)) for _ in range(20)]
    )
    assert {status for status, _ in top_ups} == {200}, top_ups
    assert {body["available"] for _, body in top_ups} == {"7.50"}
    with engine.connect() as connection:
        ledger = connection.execute(text("SELECT kind, amount_minor, reference FROM ledger_entries")).all()
        balance = connection.execute(text("SELECT available_minor FROM wallets")).scalar_one()
    assert [tuple(row) for row in ledger] == [("topup", 750, ledger[0].reference)] and balance == 750

    # The same refusals from the gevent web process, where the parser recurses on a greenlet's stack.
    deep = urllib.request.Request(
        web.base_url + "/api/auth/login", data=_nested(100_000), headers={"Content-Type": "application/json"}
    )
    assert _answer(deep)[0:2] == (400, "invalid_json")
    assert _answer(urllib.request.Request(web.base_url + "/healthz?probe=%00"))[0:2] == (
        422,
        "invalid_characters",
    )
    assert _answer(urllib.request.Request(web.base_url + "/ocpp/CP%00", headers=_charger_upgrade("CP\x00")))[
        0:2
    ] == (400, "invalid_characters")
    assert "Traceback" not in web.log()


def _answer(request: urllib.request.Request) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)["error"]["code"]
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)["error"]["code"]
