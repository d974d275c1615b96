"""Network operations in process: the authorization rules, the id-tag and user resources (REST and
CLI), local-list bookkeeping, registration closed, and a transaction's meter samples. With real
chargers: test_network_chargers.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from flask import current_app
from sqlalchemy import select

from csms.extensions import db
from csms.models import ChargingSession, IdTag, LocalList, MeterSample, OutboxMessage, User
from csms.services import authorization, local_lists, tokens, users
from csms.services.authorization import IdTagInfo, TagRecord, decide
from tests.builders import a_charge_point, a_transaction, a_user, connections

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(days=30)
EARLIER = NOW - timedelta(days=1)


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def login(client, email: str) -> dict:
    response = client.post("/api/auth/login", json={"email": email, "password": "password-123"})
    assert response.status_code == 200, response.get_json()
    return auth(response.get_json()["access_token"])


def token(user: User) -> dict:
    """A bearer token for `user`, issued as the login does (without its password check)."""
    secret = current_app.config["SECRET_KEY"]
    return auth(tokens.issue(tokens.Identity(user.id, user.role), secret, timedelta(hours=1)))


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def both_client(any_db_app):
    """For the tests that also run on PostgreSQL."""
    return any_db_app.test_client()


@pytest.fixture
def operator():
    return token(a_user(email="op@example.test", role="operator"))


# --- the decision ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (None, IdTagInfo("Invalid")),
        (TagRecord("Accepted", LATER, None), IdTagInfo("Accepted", LATER)),
        (TagRecord("Accepted", EARLIER, None), IdTagInfo("Expired", EARLIER)),
        (TagRecord("Blocked", None, "G"), IdTagInfo("Blocked", None, "G")),
        # the group's status applies to its members
        (TagRecord("Accepted", None, "G", "Blocked", None), IdTagInfo("Blocked", None, "G")),
        (TagRecord("Accepted", None, "G", "Accepted", EARLIER), IdTagInfo("Expired", EARLIER, "G")),
        (
            TagRecord("Accepted", LATER, "G", "Accepted", NOW + timedelta(days=2)),
            IdTagInfo("Accepted", NOW + timedelta(days=2), "G"),
        ),
        # a member's own refusal stands whatever its group's status
        (TagRecord("Blocked", None, "G", "Accepted", None), IdTagInfo("Blocked", None, "G")),
        # a group that is only a name (no tag of its own) decides nothing
        (TagRecord("Accepted", None, "G"), IdTagInfo("Accepted", None, "G")),
    ],
)
def test_the_decision_of_a_tag_and_its_group(record, expected):
    assert decide(record, NOW) == expected


def test_a_second_rule_plugs_into_the_chain(app, monkeypatch):
    """What a later rule (a prepaid balance) needs: it sees accepted attempts only, and its
    refusal is the answer."""
    owner = a_user()
    db.session.add(IdTag(id_tag="RULE-1", user_id=owner.id))
    db.session.add(IdTag(id_tag="RULE-2", status="Blocked"))
    db.session.commit()
    point = a_charge_point()
    seen = []

    def poor(attempt):
        seen.append((attempt.id_tag, attempt.starting, attempt.owner_id))
        return "Blocked"

    monkeypatch.setattr(authorization, "RULES", [poor])
    cache = app.extensions["ocpp"].id_tags
    assert authorization.authorize("RULE-1", point.id, cache, starting=False).status == "Blocked"
    assert authorization.authorize("RULE-2", point.id, cache, starting=True).status == "Blocked"
    assert seen == [("RULE-1", False, owner.id)]


def test_concurrent_tx_counts_open_transactions_on_connected_chargers_only(app):
    here, there, gone = a_charge_point(), a_charge_point(), a_charge_point()
    db.session.add(IdTag(id_tag="CARD"))
    db.session.commit()
    cache = app.extensions["ocpp"].id_tags
    a_transaction(gone, id_tag="CARD")  # left open by a charger that went away
    assert authorization.authorize("CARD", here.id, cache, starting=True).status == "Accepted"
    a_transaction(there, id_tag="CARD")
    connections(there.charge_point_id)
    assert authorization.authorize("CARD", here.id, cache, starting=True).status == "ConcurrentTx"
    # Authorize stays a cache lookup; its own charger's transactions are the connection's business
    assert authorization.authorize("CARD", here.id, cache, starting=False).status == "Accepted"
    assert authorization.authorize("CARD", there.id, cache, starting=True).status == "Accepted"


def test_a_change_to_a_group_changes_its_members_decisions_at_once(app):
    cache = app.extensions["ocpp"].id_tags
    db.session.add_all([IdTag(id_tag="FLEET"), IdTag(id_tag="CAR-1", parent_id_tag="FLEET")])
    db.session.commit()
    assert cache.info("CAR-1").status == "Accepted"
    from csms.services import id_tags

    id_tags.update("FLEET", status="Blocked")
    assert cache.info("CAR-1").as_ocpp() == {"status": "Blocked", "parentIdTag": "FLEET"}


# --- id tags over REST ----------------------------------------------------------------------------


def test_id_tags_are_created_searched_changed_and_deleted(both_client, operator):
    client = both_client
    owner = a_user()
    made = client.post(
        "/api/cms/id-tags",
        json={"idTag": "FLEET-1", "status": "Accepted", "note": "Company cars"},
        headers=operator,
    )
    assert made.status_code == 201, made.get_json()
    body = {
        "idTag": "CARD-7",
        "parentIdTag": "FLEET-1",
        "ownerId": owner.id,
        "expiryDate": "2030-01-01T00:00:00+02:00",
        "note": "Ada's card",
    }
    made = client.post("/api/cms/id-tags", json=body, headers=operator)
    assert made.status_code == 201, made.get_json()
    shown = made.get_json()
    assert {k: shown[k] for k in ("idTag", "status", "parentIdTag", "ownerId", "note", "expiryDate")} == {
        "idTag": "CARD-7",
        "status": "Accepted",
        "parentIdTag": "FLEET-1",
        "ownerId": owner.id,
        "note": "Ada's card",
        "expiryDate": "2029-12-31T22:00:00+00:00",
    }
    assert client.post("/api/cms/id-tags", json=body, headers=operator).status_code == 409

    page = client.get("/api/cms/id-tags?q=ada&perPage=1", headers=operator).get_json()
    assert (page["total"], [t["idTag"] for t in page["items"]]) == (1, ["CARD-7"])
    members = client.get("/api/cms/id-tags?parentIdTag=FLEET-1", headers=operator).get_json()
    assert [t["idTag"] for t in members["items"]] == ["CARD-7"]
    everyone = client.get("/api/cms/id-tags?page=2&perPage=1", headers=operator).get_json()
    assert everyone["total"] == 2 and [t["idTag"] for t in everyone["items"]] == ["FLEET-1"]

    changed = client.patch(
        "/api/cms/id-tags/CARD-7",
        json={"status": "Blocked", "note": None, "expiryDate": None},
        headers=operator,
    )
    assert changed.status_code == 200
    assert {k: changed.get_json()[k] for k in ("status", "note", "expiryDate")} == {
        "status": "Blocked",
        "note": None,
        "expiryDate": None,
    }
    refused = client.delete("/api/cms/id-tags/FLEET-1", headers=operator)
    assert (refused.status_code, refused.get_json()["error"]["code"]) == (409, "id_tag_has_members")
    assert client.delete("/api/cms/id-tags/CARD-7", headers=operator).status_code == 204
    assert client.get("/api/cms/id-tags/CARD-7", headers=operator).status_code == 404


BAD_TAGS = [
    ({"idTag": "X" * 21}, 422, "validation_error"),
    ({"idTag": "A B"}, 422, "validation_error"),
    ({"idTag": "OK-1", "status": "Lost"}, 422, "validation_error"),
    ({"idTag": "OK-1", "expiryDate": "2030-01-01T00:00:00"}, 422, "validation_error"),
    ({"idTag": "OK-1", "parentIdTag": "NO-GROUP"}, 422, "parent_not_found"),
    ({"idTag": "OK-1", "parentIdTag": "OK-1"}, 422, "invalid_parent"),
    ({"idTag": "OK-1", "ownerId": 999}, 422, "owner_not_found"),
]


def test_bad_id_tags_are_refused_with_a_code(both_client, operator):
    for body, status, code in BAD_TAGS:
        response = both_client.post("/api/cms/id-tags", json=body, headers=operator)
        assert (response.status_code, response.get_json()["error"]["code"]) == (status, code), body
    assert db.session.scalar(select(IdTag.id)) is None


def test_id_tags_are_for_operators(client):
    customer = token(a_user())
    assert client.get("/api/cms/id-tags", headers=customer).status_code == 403
    assert client.get("/api/cms/id-tags").status_code == 401


# --- flask idtag import ---------------------------------------------------------------------------


def test_idtag_import_reports_each_refused_row_and_is_idempotent(any_db_app, tmp_path):
    owner = a_user()
    path = tmp_path / "tags.csv"
    path.write_text(
        "idTag,status,expiryDate,parentIdTag,ownerId,note\n"
        f"CARD-1,,,FLEET,{owner.id},first card\n"
        "FLEET,Accepted,,,,the fleet\n"
        "CARD-2,Blocked,2030-01-01T00:00:00+00:00,FLEET,,\n"
        "CARD-3,Lost,,,,\n"
        "CARD-4,,not-a-date,,,\n"
        "CARD-5,,,NOWHERE,,\n"
        "CARD-6,,,,9999,\n"
        "THIS-TAG-IS-FAR-TOO-LONG,,,,,\n"
        "CARD-1,,,,,\n"
        "CARD-7,,,,,bad\x00note\n"
        "\n",
        encoding="utf-8",
    )
    cli = any_db_app.test_cli_runner()
    first = cli.invoke(args=["idtag", "import", str(path)])
    assert first.exit_code == 1, first.output
    assert first.stdout.splitlines()[0] == "imported 3 tag(s): 3 new, 0 updated; 0 unchanged; 7 refused"
    assert first.stderr.splitlines() == [
        "  line 5 (CARD-3): status must be one of Accepted, Blocked, Expired, Invalid",
        "  line 6 (CARD-4): expiryDate is not an ISO 8601 date-time",
        "  line 7 (CARD-5): no idTag 'NOWHERE' to be the parent",
        "  line 8 (CARD-6): no user 9999 to own the tag",
        "  line 9 (THIS-TAG-IS-FAR-TOO-LONG): idTag must be 1 to 20 printable ASCII characters",
        "  line 10 (CARD-1): the idTag is on line 2 already",
        "  line 11 (CARD-7): note must be at most 255 characters, without NUL",
    ]
    rows = db.session.execute(
        select(IdTag.id_tag, IdTag.status, IdTag.parent_id_tag, IdTag.user_id, IdTag.note).order_by(
            IdTag.id_tag
        )
    ).all()
    assert rows == [
        ("CARD-1", "Accepted", "FLEET", owner.id, "first card"),
        ("CARD-2", "Blocked", "FLEET", None, None),
        ("FLEET", "Accepted", None, None, "the fleet"),
    ]
    again = cli.invoke(args=["idtag", "import", str(path)])
    assert again.stdout.splitlines()[0] == "imported 0 tag(s): 0 new, 0 updated; 3 unchanged; 7 refused"

    path.write_text("idTag,status\nCARD-2,Accepted\n", encoding="utf-8")
    changed = cli.invoke(args=["idtag", "import", str(path)])
    assert (changed.exit_code, changed.stdout) == (
        0,
        "imported 1 tag(s): 0 new, 1 updated; 0 unchanged; 0 refused\n",
    )
    # a column the file lacks is "not set": the file says what the tag is
    assert db.session.scalar(select(IdTag.parent_id_tag).where(IdTag.id_tag == "CARD-2")) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tag,status\nA,Accepted\n", "the header row must name an idTag column"),
        ("idTag,colour\nA,red\n", "unknown columns colour"),
    ],
)
def test_idtag_import_refuses_a_file_it_cannot_read(app, tmp_path, text, message):
    path = tmp_path / "tags.csv"
    path.write_text(text, encoding="utf-8")
    result = app.test_cli_runner().invoke(args=["idtag", "import", str(path)])
    assert result.exit_code == 1 and message in result.output
    assert db.session.scalar(select(IdTag.id)) is None


# --- local lists ----------------------------------------------------------------------------------


def test_a_differential_update_holds_what_changed_and_removals_without_info():
    old = [
        {"idTag": "A", "idTagInfo": {"status": "Accepted"}},
        {"idTag": "B", "idTagInfo": {"status": "Accepted"}},
        {"idTag": "C", "idTagInfo": {"status": "Accepted"}},
    ]
    new = [
        {"idTag": "A", "idTagInfo": {"status": "Accepted"}},
        {"idTag": "B", "idTagInfo": {"status": "Blocked"}},
        {"idTag": "D", "idTagInfo": {"status": "Accepted"}},
    ]
    assert local_lists.differential(old, new) == [
        {"idTag": "B", "idTagInfo": {"status": "Blocked"}},
        {"idTag": "C"},
        {"idTag": "D", "idTagInfo": {"status": "Accepted"}},
    ]
    assert local_lists.differential(new, new) == []


def test_the_policy_is_set_checked_and_shown(client, operator):
    point = a_charge_point()
    path = f"/api/cms/points/{point.charge_point_id}/local-list"
    shown = client.get(path, headers=operator).get_json()
    assert shown == {
        "chargePointId": point.charge_point_id,
        "policy": "none",
        "parentIdTag": None,
        "supported": None,
        "version": 0,
        "chargerVersion": None,
        "inSync": False,
        "entries": [],
        "lastSyncAt": None,
        "lastSyncOutcome": None,
    }
    refused = client.patch(path, json={"policy": "parent"}, headers=operator)
    assert (refused.status_code, refused.get_json()["error"]["code"]) == (422, "invalid_parent")
    refused = client.patch(path, json={"policy": "parent", "parentIdTag": "NO-GROUP"}, headers=operator)
    assert (refused.status_code, refused.get_json()["error"]["code"]) == (422, "parent_not_found")
    assert client.patch(path, json={"policy": "some"}, headers=operator).status_code == 422
    assert client.get("/api/cms/points/NO-SUCH-CP/local-list", headers=operator).status_code == 404
    assert db.session.scalar(select(LocalList.policy)) is None

    queued = db.session.scalar(select(OutboxMessage.id).order_by(OutboxMessage.id.desc()).limit(1)) or 0
    changed = client.patch(path, json={"policy": "all", "parentIdTag": "IGNORED"}, headers=operator)
    assert changed.status_code == 200
    assert (changed.get_json()["policy"], changed.get_json()["parentIdTag"]) == ("all", None)
    # the update itself goes through a worker: one message for it, in the same transaction
    messages = db.session.scalars(select(OutboxMessage).where(OutboxMessage.id > queued)).all()
    assert [m.queue_name for m in messages if b"sync_local_lists" in m.body] == ["commands"]


def test_the_wanted_list_follows_the_policy(app):
    db.session.add_all(
        [
            IdTag(id_tag="G"),
            IdTag(id_tag="M-1", parent_id_tag="G"),
            IdTag(id_tag="M-2", parent_id_tag="G", expiry_date=EARLIER),
            IdTag(id_tag="SOLO", status="Blocked"),
        ]
    )
    db.session.commit()
    assert local_lists.wanted_entries("none", None, NOW) == []
    assert local_lists.wanted_entries("parent", "G", NOW) == [
        {"idTag": "G", "idTagInfo": {"status": "Accepted"}},
        {"idTag": "M-1", "idTagInfo": {"status": "Accepted", "parentIdTag": "G"}},
        {
            "idTag": "M-2",
            "idTagInfo": {"status": "Expired", "expiryDate": EARLIER.isoformat(), "parentIdTag": "G"},
        },
    ]
    assert [e["idTag"] for e in local_lists.wanted_entries("all", None, NOW)] == ["G", "M-1", "M-2", "SOLO"]


# --- users ------------------------------------------------------------------------------------------


def test_operators_list_search_promote_and_disable_accounts(both_client, operator):
    client = both_client
    ada = users.create_user("ada@example.test", "password-123", id_tag="ADA-1")
    users.create_user("bob@example.test", "password-123")
    page = client.get("/api/cms/users?q=ADA", headers=operator).get_json()
    assert page["total"] == 1
    assert {k: page["items"][0][k] for k in ("email", "role", "disabled", "idTags")} == {
        "email": "ada@example.test",
        "role": "customer",
        "disabled": False,
        "idTags": ["ADA-1"],
    }
    operators = client.get("/api/cms/users?role=operator", headers=operator).get_json()
    assert [u["email"] for u in operators["items"]] == ["op@example.test"]

    token = login(client, "ada@example.test")
    promoted = client.patch(f"/api/cms/users/{ada.id}", json={"role": "operator"}, headers=operator)
    assert promoted.get_json()["role"] == "operator"
    # the role is the account's, as it is now: her customer token opens operator routes at once
    assert client.get("/api/cms/users", headers=token).status_code == 200
    disabled = client.patch(f"/api/cms/users/{ada.id}", json={"disabled": True}, headers=operator).get_json()
    assert disabled["disabled"] is True and disabled["disabledAt"]
    assert client.get("/api/cms/users?disabled=true", headers=operator).get_json()["total"] == 1
    for response in (
        client.get("/api/cms/users", headers=token),
        client.post("/api/auth/login", json={"email": "ada@example.test", "password": "password-123"}),
    ):
        assert (response.status_code, response.get_json()["error"]["code"]) == (403, "account_disabled")
    # a wrong password says only that
    wrong = client.post("/api/auth/login", json={"email": "ada@example.test", "password": "password-999"})
    assert wrong.status_code == 401

    me = db.session.scalar(select(User.id).where(User.email == "op@example.test"))
    for change in ({"disabled": True}, {"role": "customer"}):
        refused = client.patch(f"/api/cms/users/{me}", json=change, headers=operator)
        assert (refused.status_code, refused.get_json()["error"]["code"]) == (409, "own_account")
    assert client.patch("/api/cms/users/99999", json={"disabled": True}, headers=operator).status_code == 404


def test_flask_user_commands_list_change_disable_and_enable(app):
    users.create_user("ada@example.test", "password-123")
    cli = app.test_cli_runner()
    assert cli.invoke(args=["user", "role", "ada@example.test", "operator"]).output == (
        "ada@example.test is now operator\n"
    )
    assert cli.invoke(args=["user", "disable", "ada@example.test"]).output == (
        "ada@example.test disabled: it cannot log in\n"
    )
    listed = cli.invoke(args=["user", "list", "--search", "ada"]).output.split()
    assert listed[1:] == ["ada@example.test", "operator", "disabled"]
    assert cli.invoke(args=["user", "enable", listed[0]]).output == "ada@example.test enabled\n"
    missing = cli.invoke(args=["user", "disable", "nobody@example.test"])
    assert missing.exit_code == 1 and "no user nobody@example.test" in missing.output


def test_closed_registration_refuses_sign_ups(make_app):
    app = make_app(REGISTRATION="closed")
    with app.app_context():
        response = app.test_client().post(
            "/api/auth/register", json={"email": "new@example.test", "password": "password-123"}
        )
        assert response.status_code == 403
        assert response.get_json()["error"]["code"] == "registration_closed"
        assert db.session.scalar(select(User.id)) is None


def test_the_registration_setting_is_checked_at_start():
    from csms.config import load

    assert load(environ={"CSMS_REGISTRATION": "Closed"})["REGISTRATION"] == "closed"
    with pytest.raises(ValueError, match="CSMS_REGISTRATION"):
        load(environ={"CSMS_REGISTRATION": "maybe"})


# --- meter samples --------------------------------------------------------------------------------


def _samples(transaction, count: int) -> None:
    start = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    for n in range(count):
        db.session.add(
            MeterSample(
                charge_point_id=transaction.charge_point_id,
                connector_id=1,
                transaction_id=transaction.id,
                sampled_at=start + timedelta(minutes=n),
                measurand="Energy.Active.Import.Register",
                phase="",
                location="Outlet",
                context="Sample.Periodic",
                unit="Wh",
                value=Decimal(1000 + n),
                raw_value=str(1 + n / 1000),
                raw_unit="kWh",
            )
        )
    db.session.commit()


def test_a_transaction_shows_its_samples_paged(client, operator):
    transaction = a_transaction(id_tag="CARD")
    _samples(transaction, 3)
    body = client.get(f"/api/cms/transactions/{transaction.id}?perPage=2&page=2", headers=operator).get_json()
    assert (body["id"], body["idTag"], body["state"]) == (transaction.id, "CARD", "started")
    assert body["samples"]["total"] == 3 and body["samples"]["perPage"] == 2
    assert body["samples"]["items"] == [
        {
            "timestamp": "2026-01-01T12:02:00+00:00",
            "connectorId": 1,
            "measurand": "Energy.Active.Import.Register",
            "phase": None,
            "location": "Outlet",
            "context": "Sample.Periodic",
            "unit": "Wh",
            "value": "1002.0000",
            "rawValue": "1.002",
            "rawUnit": "kWh",
        }
    ]
    assert client.get("/api/cms/transactions/99999", headers=operator).status_code == 404


def test_a_customer_sees_the_samples_of_their_own_sessions_only(client, operator):
    owner, other = a_user(), a_user()
    transaction = a_transaction(id_tag="CARD")
    _samples(transaction, 2)
    session = ChargingSession(
        user_id=owner.id,
        charge_point_id=transaction.charge_point_id,
        connector_id=1,
        id_tag="CARD",
        transaction_id=transaction.id,
        state="charging",
        currency="EUR",
        prepaid_minor=1000,
    )
    db.session.add(session)
    db.session.commit()
    path = f"/api/user/charging/sessions/{session.id}/samples"
    mine = client.get(path, headers=token(owner)).get_json()
    assert [s["value"] for s in mine["items"]] == ["1000.0000", "1001.0000"]
    assert client.get(path, headers=token(other)).status_code == 404
    assert client.get(path, headers=operator).status_code == 403


def test_a_tag_moving_between_groups_updates_the_lists_of_both_and_no_other(app):
    import dramatiq

    from csms.models import QueuedCommand
    from csms.services import id_tags

    db.session.add_all(
        [IdTag(id_tag=g) for g in ("G1", "G2", "G3")] + [IdTag(id_tag="CAR", parent_id_tag="G1")]
    )
    points = {group: a_charge_point() for group in ("G1", "G2", "G3")}
    for group, point in points.items():
        db.session.add(
            LocalList(
                charge_point_id=point.id,
                policy="parent",
                parent_id_tag=group,
                supported=True,
                version=1,
                entries=local_lists.wanted_entries("parent", group),
                charger_version=1,
                full_needed=False,
            )
        )
    db.session.commit()
    connections(*(point.charge_point_id for point in points.values()))
    db.session.commit()

    id_tags.change("CAR", {"parent_id_tag": "G2"})
    body = db.session.scalars(select(OutboxMessage.body).order_by(OutboxMessage.id.desc())).first()
    (reason,) = dramatiq.Message.decode(body).args
    assert reason == {"idTags": ["CAR"], "groups": ["CAR", "G1", "G2"]}
    assert local_lists.sync_all(reason["groups"]) == {"Full": 0, "Differential": 2}
    sent = db.session.execute(select(QueuedCommand.charge_point_id, QueuedCommand.payload)).all()
    assert sorted(sent) == sorted(
        [
            (
                points["G1"].charge_point_id,
                {
                    "listVersion": 2,
                    "updateType": "Differential",
                    "localAuthorizationList": [{"idTag": "CAR"}],
                },
            ),
            (
                points["G2"].charge_point_id,
                {
                    "listVersion": 2,
                    "updateType": "Differential",
                    "localAuthorizationList": [
                        {"idTag": "CAR", "idTagInfo": {"status": "Accepted", "parentIdTag": "G2"}}
                    ],
                },
            ),
        ]
    )
    assert local_lists.sync_all(reason["groups"]) == {"Full": 0, "Differential": 0}  # run twice: nothing more


def test_socketio_refuses_the_token_of_a_disabled_account(app):
    from flask_socketio import ConnectionRefusedError

    from csms.realtime import on_connect

    user = a_user(disabled_at=NOW)
    bearer = token(user)["Authorization"].removeprefix("Bearer ")
    with app.test_request_context(), pytest.raises(ConnectionRefusedError, match="this account is disabled"):
        on_connect({"token": bearer})
