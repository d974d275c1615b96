"""Every transaction billed, with a bill that explains itself: a tag owner's RFID transaction from
the wallet (or as an open balance), a tag nobody owns priced only; the tariff snapshotted at the
start; an app session stopped before its budget and its overrun reported; operator adjustments and
refunds in the ledger with their reason; receipts numbered without gaps. The actors' code runs
directly (twice, and twice concurrently) against SQLite and PostgreSQL."""

from __future__ import annotations

import functools
import shutil
import subprocess
import threading
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from flask import Flask
from sqlalchemy import select

from actors.billing import bill_transaction, bill_transactions, settle_session
from actors.metering import process_meter_values
from actors.transactions import process_transaction_messages
from csms.extensions import db
from csms.models import (
    ChargingSession,
    IdTag,
    LedgerEntry,
    QueuedCommand,
    Receipt,
    ReceiptCounter,
    Tariff,
    Transaction,
    Wallet,
)
from csms.schemas.charging import Session as SessionSchema
from csms.services import analytics, billing, bills, prepaid, sessions, transactions, users, wallet
from csms.services.authorization import IdTagInfo
from tests.builders import a_charge_point
from tests.support import exchanges
from tests.test_pipeline_idempotency import run_twice

CP = "BILL-1"
exchange = functools.partial(exchanges.exchange, CP)
DAY = "2026-09-01"

# 0.40/kWh, 1.20/h, 0.50 a session, 20 % tax. 7,300 Wh in 45 minutes: 2.92 + 0.90 + 0.50 = 4.32 net,
# 5.184 gross -> 5.18, of which 0.86 tax.
PRICES = {
    "energy_price": Decimal("0.40"),
    "time_price": Decimal("1.20"),
    "session_fee": Decimal("0.50"),
    "tax_percent": Decimal("20"),
}
EXPECTED = {"energy": "2.92", "time": "0.90", "sessionFee": "0.50", "tax": "0.86", "total": "5.18"}
SNAPSHOT = {
    "name": "Night",
    "currency": "EUR",
    "energyPrice": "0.4000",
    "timePrice": "1.2000",
    "sessionFee": "0.5000",
    "taxPercent": "20.00",
}


@pytest.fixture
def world(any_db_app: Flask):
    """A charger with three connectors on tariff "Night"; a prepaid customer ADA (50.00), a postpaid
    one BOB (3.00), and a tag NOBODY nobody owns."""
    tariff = Tariff(name="Night", currency="EUR", **PRICES)
    db.session.add(tariff)
    db.session.commit()
    point = a_charge_point(charge_point_id=CP, connectors=3, tariff_id=tariff.id)
    ada = users.create_user("ada@example.test", "password-123", id_tag="ADA")
    bob = users.create_user("bob@example.test", "password-123", id_tag="BOB")
    users.set_account_policy("bob@example.test", "postpaid")
    db.session.add(IdTag(id_tag="NOBODY"))
    db.session.commit()
    for user, funds in ((ada, 5000), (bob, 300)):
        wallet.top_up(_wallet_id(user.id), funds, reference=f"seed-{user.id}")
    return {"app": any_db_app, "point": point.id, "tariff": tariff.id, "ada": ada.id, "bob": bob.id}


def _wallet_id(user_id: int) -> int:
    return db.session.scalar(select(Wallet.id).where(Wallet.user_id == user_id))


def at(minute: int, second: int = 0) -> str:
    return f"{DAY}T10:{minute:02d}:{second:02d}+00:00"


def start(world, tag: str, connector: int = 1, meter: int = 1000) -> int:
    started = datetime.fromisoformat(at(0))
    [transaction_id] = transactions.allocate_transaction_ids(
        [transactions.Start(world["point"], connector, tag, started, meter)]
    )
    request = {"connectorId": connector, "idTag": tag, "meterStart": meter, "timestamp": at(0)}
    answer = {"transactionId": transaction_id, "idTagInfo": {"status": "Accepted"}}
    run_twice(world["app"], process_transaction_messages, [exchange("StartTransaction", request, answer)])
    return transaction_id


def stop(world, transaction_id: int, meter: int, minute: int) -> None:
    """The Stop, then billing as the actors the Stop schedules would (each run twice)."""
    request = {"transactionId": transaction_id, "meterStop": meter, "timestamp": at(minute)}
    run_twice(world["app"], process_transaction_messages, [exchange("StopTransaction", request, {})])
    session_id = db.session.scalar(
        select(ChargingSession.id).where(ChargingSession.transaction_id == transaction_id)
    )
    if session_id is not None:
        run_twice(world["app"], settle_session, session_id)
    else:
        run_twice(world["app"], bill_transactions, [transaction_id])


def meter(world, transaction_id: int, minute: int, register_wh: int, watts: int, connector: int = 1) -> None:
    request = {
        "connectorId": connector,
        "transactionId": transaction_id,
        "meterValue": [
            {
                "timestamp": at(minute),
                "sampledValue": [
                    {"value": str(register_wh), "unit": "Wh"},
                    {"value": str(watts), "unit": "W", "measurand": "Power.Active.Import"},
                ],
            }
        ],
    }
    run_twice(world["app"], process_meter_values, [exchange("MeterValues", request, {})])


def ledger(user_id: int) -> list[tuple[str, int]]:
    rows = db.session.execute(
        select(LedgerEntry.kind, LedgerEntry.amount_minor)
        .where(LedgerEntry.wallet_id == _wallet_id(user_id))
        .order_by(LedgerEntry.id)
    )
    return [tuple(row) for row in rows]


def balance(user_id: int) -> tuple[int, int, int]:
    db.session.expire_all()
    found = db.session.get(Wallet, _wallet_id(user_id))
    return found.available_minor, found.held_minor, found.owed_minor


def queued() -> list[tuple[str, str, dict, str]]:
    rows = db.session.execute(
        select(
            QueuedCommand.dedup_key, QueuedCommand.action, QueuedCommand.payload, QueuedCommand.reason
        ).order_by(QueuedCommand.id)
    )
    return [tuple(row) for row in rows]


def receipt_numbers() -> dict[int, int]:
    return dict(db.session.execute(select(Receipt.transaction_id, Receipt.number)).all())


def test_an_rfid_transaction_is_billed_to_the_tag_owners_wallet_with_its_breakdown(world):
    transaction_id = start(world, "ADA")
    stop(world, transaction_id, 1000 + 7300, minute=45)
    session = db.session.scalar(
        select(ChargingSession).where(ChargingSession.transaction_id == transaction_id)
    )
    assert ledger(world["ada"])[1:] == [("hold", 2000), ("capture", 518), ("refund", 1482)]
    assert balance(world["ada"]) == (5000 - 518, 0, 0)
    shown = SessionSchema().dump(session)
    assert (shown["cost"], shown["breakdown"], shown["unbilled"]) == ("5.18", EXPECTED, "0.00")
    assert shown["tariff"] == {"id": world["tariff"], **SNAPSHOT}
    transaction = db.session.get(Transaction, transaction_id)
    assert (transaction.billing, transaction.billed_user_id, transaction.cost_minor) == (
        "session",
        world["ada"],
        518,
    )
    assert receipt_numbers() == {transaction_id: 1}


def test_a_postpaid_owner_pays_from_the_wallet_or_owes_and_a_nobodys_tag_is_priced_only(world):
    small = start(world, "BOB", connector=1)
    large = start(world, "BOB", connector=2)
    nobodys = start(world, "NOBODY", connector=3)
    assert db.session.scalar(select(ChargingSession.id)) is None  # on account: no hold, no session
    stop(world, small, 1000 + 1000, minute=10)  # 0.40 + 0.20 + 0.50 = 1.10, +20 % = 1.32
    stop(world, large, 1000 + 7300, minute=45)  # 5.18: more than the 1.68 left
    stop(world, nobodys, 1000 + 7300, minute=45)
    assert ledger(world["bob"])[1:] == [("charge", 132), ("open_balance", 518)]
    assert balance(world["bob"]) == (300 - 132, 0, 518)
    billed = {
        t.id: (t.billing, t.billed_user_id, t.cost_minor, t.breakdown["total"])
        for t in db.session.scalars(select(Transaction))
    }
    assert billed == {
        small: ("wallet", world["bob"], 132, 132),
        large: ("open_balance", world["bob"], 518, 518),
        nobodys: ("nobody", None, 518, 518),
    }
    assert receipt_numbers() == {small: 1, large: 2}  # nobody to hand the third one to


def test_a_batch_of_stops_is_billed_in_order_as_if_one_by_one(world):
    """One `bill_transactions` for three Stops: the owner's wallet pays the first and cannot pay the
    second (owed), the tag nobody owns is priced only; the same as billed one at a time."""
    small = start(world, "BOB", connector=1)
    large = start(world, "BOB", connector=2)
    nobodys = start(world, "NOBODY", connector=3)
    for transaction_id, register, minute in ((small, 2000, 10), (large, 8300, 45), (nobodys, 8300, 45)):
        request = {"transactionId": transaction_id, "meterStop": register, "timestamp": at(minute)}
        process_transaction_messages([exchange("StopTransaction", request, {})])
    run_twice(world["app"], bill_transactions, [nobodys, large, small])
    assert ledger(world["bob"])[1:] == [("charge", 132), ("open_balance", 518)]
    assert balance(world["bob"]) == (300 - 132, 0, 518)
    billed = {t.id: (t.billing, t.billed_user_id) for t in db.session.scalars(select(Transaction))}
    assert billed == {
        small: ("wallet", world["bob"]),
        large: ("open_balance", world["bob"]),
        nobodys: ("nobody", None),
    }
    assert receipt_numbers() == {small: 1, large: 2}


def test_a_stop_batchs_bills_go_together_and_one_that_fails_goes_alone(world, monkeypatch):
    """A Stop batch's transactions are billed by one message; one whose billing fails leaves the
    others billed and is sent on its own, to `bill_transaction`'s retries and dead-letter queue."""
    first, poison, third = (start(world, "BOB", connector=c) for c in (1, 2, 3))
    for transaction_id in (first, poison, third):
        request = {"transactionId": transaction_id, "meterStop": 2000, "timestamp": at(10)}
        process_transaction_messages([exchange("StopTransaction", request, {})])
    price = bills.price
    monkeypatch.setattr(bills, "price", lambda t: 1 / 0 if t.id == poison else price(t))
    sent = []
    monkeypatch.setattr(bill_transaction, "send", lambda transaction_id: sent.append(transaction_id))

    bill_transactions([first, poison, third])

    assert sorted(sent) == sorted([first, poison, third])  # each on its own now
    assert {t.id: t.billing for t in db.session.scalars(select(Transaction))} == dict.fromkeys(
        (first, poison, third)
    )  # the failed batch left nothing behind
    for transaction_id in sent:
        if transaction_id != poison:
            bill_transaction(transaction_id)
    billed = {t.id: t.billing for t in db.session.scalars(select(Transaction))}
    assert billed == {first: "wallet", poison: None, third: "wallet"}


def test_a_tariff_edited_mid_session_leaves_its_bill_alone_and_the_budget_is_watched(world):
    session_id = sessions.open_session(world["ada"], CP, 1, 1000).id
    transaction_id = start(world, "ADA")
    assert db.session.get(ChargingSession, session_id).transaction_id == transaction_id
    tariff = db.session.get(Tariff, world["tariff"])
    tariff.energy_price, tariff.name = Decimal("9.99"), "Night (new prices)"
    db.session.commit()
    meter(world, transaction_id, minute=30, register_wh=1000 + 5000, watts=10_000)
    stop(world, transaction_id, 1000 + 7300, minute=45)
    session = db.session.get(ChargingSession, session_id)
    assert (session.state, session.cost_minor) == ("completed", 518)
    assert SessionSchema().dump(session)["breakdown"] == EXPECTED
    assert db.session.get(Transaction, transaction_id).tariff["name"] == "Night"
    # The app session asked the charger for meter values every 10 s, and for the usual 60 s
    # (CSMS_BOOT_CONFIGURATION) once billed: each once, however often redelivered.
    assert queued() == [
        (
            f"session:{session_id}:sample-interval",
            "ChangeConfiguration",
            {"key": "MeterValueSampleInterval", "value": "10"},
            f"session {session_id}: meter values every 10 s to stop it before its budget",
        ),
        (
            f"session:{session_id}:sample-interval-restore",
            "ChangeConfiguration",
            {"key": "MeterValueSampleInterval", "value": "60"},
            f"session {session_id} ended: meter values every 60 s again",
        ),
    ]


def test_a_prepaid_session_is_stopped_before_its_budget_and_its_overrun_is_reported(world):
    """3.00 at 11 kW costs (11 x 0.40 + 1.20) x 1.2 = 6.72 an hour: at 10:21 (2.95 spent) the 0.05
    left last 27 s, within the 30 s margin, so the stop is asked then; the charger still delivers
    until 10:23 (3.18): the hold pays 3.00, 0.18 and 238 Wh are reported unbilled."""
    session_id = sessions.open_session(world["ada"], CP, 1, 300).id
    transaction_id = start(world, "ADA")
    meter(world, transaction_id, minute=10, register_wh=1000 + 1833, watts=11_000)  # 1.72: 685 s left
    assert [row[1] for row in queued()] == ["ChangeConfiguration"]
    meter(world, transaction_id, minute=21, register_wh=1000 + 3850, watts=11_000)  # 2.95: 27 s left
    assert queued()[1:] == [
        (
            f"session:{session_id}:remote-stop",
            "RemoteStopTransaction",
            {"transactionId": transaction_id},
            "prepaid amount used up in 27 s at the current power",
        )
    ]
    assert db.session.get(ChargingSession, session_id).state == "stopping"
    stop(world, transaction_id, 1000 + 4217, minute=23)
    session = db.session.get(ChargingSession, session_id)
    assert (session.cost_minor, session.unbilled_minor, session.unbilled_wh) == (300, 18, 238)
    assert ledger(world["ada"])[1:] == [("hold", 300), ("capture", 300), ("refund", 0)]
    assert balance(world["ada"]) == (5000 - 300, 0, 0)
    day = datetime(2026, 9, 1, tzinfo=UTC)
    [report] = analytics.report(day, datetime(2026, 9, 2, tzinfo=UTC), "day", day)
    assert (report.revenue_minor, report.unbilled_minor, report.unbilled_wh) == (
        {"EUR": 300},
        {"EUR": 18},
        238,
    )


def test_operator_adjustments_and_refunds_are_ledger_entries_with_who_and_why(world):
    operator = users.create_user("op@example.test", "password-123", role="operator")
    client = world["app"].test_client()
    token = client.post("/api/auth/login", json={"email": "op@example.test", "password": "password-123"})
    auth = {"Authorization": f"Bearer {token.get_json()['access_token']}"}
    url = f"/api/cms/users/{world['ada']}/wallet/adjustments"
    credit = client.post(
        url, json={"amount": "12.50", "reason": "charger out of order on 1 Sep"}, headers=auth
    )
    assert credit.status_code == 201, credit.get_json()
    assert {k: credit.get_json()[k] for k in ("kind", "amount", "createdBy", "description")} == {
        "kind": "credit",
        "amount": "12.50",
        "createdBy": operator.id,
        "description": "charger out of order on 1 Sep",
    }
    debit = client.post(url, json={"amount": "-2.50", "reason": "duplicate credit"}, headers=auth)
    assert (debit.status_code, debit.get_json()["kind"]) == (201, "debit")
    too_much = client.post(url, json={"amount": "-1000.00", "reason": "typo"}, headers=auth)
    assert (too_much.status_code, too_much.get_json()["error"]["code"]) == (409, "insufficient_funds")
    for bad in ({"amount": "0", "reason": "x"}, {"amount": "5.00"}, {"amount": "1.234", "reason": "x"}):
        assert client.post(url, json=bad, headers=auth).status_code == 422
    assert (
        client.post(
            "/api/cms/users/999999/wallet/adjustments", json={"amount": "1", "reason": "x"}, headers=auth
        ).status_code
        == 404
    )
    assert balance(world["ada"]) == (5000 + 1250 - 250, 0, 0)

    # The customer sees the entries, with the operator and the reason, in their ledger.
    token = client.post("/api/auth/login", json={"email": "ada@example.test", "password": "password-123"})
    mine = client.get(
        "/api/user/wallet", headers={"Authorization": f"Bearer {token.get_json()['access_token']}"}
    )
    assert [
        (e["kind"], e["amount"], e["createdBy"], e["description"]) for e in mine.get_json()["ledger"][:2]
    ] == [
        ("debit", "2.50", operator.id, "duplicate credit"),
        ("credit", "12.50", operator.id, "charger out of order on 1 Sep"),
    ]

    # A billed session refunded in part, then the rest; never more than it cost.
    transaction_id = start(world, "ADA")
    stop(world, transaction_id, 1000 + 7300, minute=45)
    session_id = db.session.scalar(
        select(ChargingSession.id).where(ChargingSession.transaction_id == transaction_id)
    )
    refunds = f"/api/cms/sessions/{session_id}/refunds"
    once = {"amount": "2.00", "reason": "slow charging", "idempotencyKey": "ticket-7"}
    part, retried = (client.post(refunds, json=once, headers=auth) for _ in range(2))
    assert (retried.status_code, retried.get_json()["id"]) == (201, part.get_json()["id"])
    assert (part.status_code, part.get_json()["amount"], part.get_json()["transactionId"]) == (
        201,
        "2.00",
        transaction_id,
    )
    rest = client.post(refunds, json={"reason": "goodwill"}, headers=auth)
    assert (rest.status_code, rest.get_json()["amount"], rest.get_json()["description"]) == (
        201,
        "3.18",
        f"Refund of session {session_id}: goodwill",
    )
    again = client.post(refunds, json={"amount": "0.01", "reason": "again"}, headers=auth)
    assert (again.status_code, again.get_json()["error"]["code"]) == (409, "refund_exceeds_cost")
    rest_again = client.post(refunds, json={"reason": "again"}, headers=auth)
    assert (rest_again.status_code, rest_again.get_json()["error"]["code"]) == (409, "nothing_to_refund")
    assert balance(world["ada"]) == (6000, 0, 0)  # 60.00 after adjustments, the session refunded whole


@pytest.mark.parametrize("any_db_app", ["sqlite"], indirect=True)  # nothing database-specific
def test_the_cli_adjusts_a_wallet_with_a_reason(world):
    runner = world["app"].test_cli_runner()
    done = runner.invoke(args=["wallet", "adjust", "bob@example.test", "--reason", "promo", "--", "-1.00"])
    assert (done.exit_code, done.output) == (0, "bob@example.test: debit 1.00 EUR (promo)\n")
    refused = runner.invoke(args=["wallet", "adjust", "bob@example.test", "--reason", "x", "--", "-99.00"])
    assert (refused.exit_code, refused.output) == (
        1,
        "Error: the debit exceeds the available balance\n  available: 2.00\n",
    )
    entry = db.session.scalar(select(LedgerEntry).order_by(LedgerEntry.id.desc()))
    assert (entry.kind, entry.amount_minor, entry.description, entry.created_by_id) == (
        "debit",
        100,
        "promo",
        None,
    )


@pytest.mark.parametrize("any_db_app", ["sqlite"], indirect=True)  # announcements land at the commit
def test_a_prepaid_owner_below_the_minimum_is_refused_at_authorize_until_topped_up(world):
    gateway = world["app"].extensions["ocpp"]
    accepted = IdTagInfo("Accepted")

    def decide(tag: str, minimum: int) -> str:
        return prepaid.below_minimum(accepted, gateway.standings.standing(tag), minimum).status

    assert [decide("ADA", 5000), decide("ADA", 5001), decide("BOB", 10_000), decide("NOBODY", 1)] == [
        "Accepted",
        "Blocked",
        "Accepted",  # postpaid: on account
        "Accepted",  # no owner: not refused for money
    ]
    wallet.adjust(world["ada"], -4900, "spent elsewhere", operator_id=None)  # announced: cache dropped
    assert decide("ADA", 500) == "Blocked"
    wallet.top_up(_wallet_id(world["ada"]), 400, reference="more")
    assert decide("ADA", 500) == "Accepted"


@pytest.mark.postgres
def test_receipts_are_numbered_without_gaps_under_concurrent_settlement(make_app, postgres_url):
    """20 transactions billed at once from 20 threads, one of which rolls back: 1..19, no gap."""
    app = make_app(DATABASE_URL=postgres_url)
    with app.app_context():
        point = a_charge_point(charge_point_id="RCPT-1", connectors=1)
        db.session.add(Tariff(name="T", currency="EUR", is_default=True, **PRICES))
        user = users.create_user("many@example.test", "password-123", id_tag="MANY")
        wallet.top_up(_wallet_id(user.id), 100_000, reference="seed")
        ids = []
        for n in range(20):
            started = datetime(2026, 9, 1, 10, n, tzinfo=UTC)
            t = Transaction(
                charge_point_id=point.id,
                connector_id=1,
                id_tag="MANY",
                meter_start_wh=0,
                started_at=started,
                state="stopped",
                meter_stop_wh=1000,
                energy_wh=1000,
                stopped_at=started.replace(minute=n + 30),
            )
            db.session.add(t)
            db.session.flush()
            ids.append(t.id)
        db.session.commit()
    barrier = threading.Barrier(20)
    errors = []

    def bill(transaction_id: int, fail: bool) -> None:
        with app.app_context():
            try:
                barrier.wait(timeout=30)
                billing.bill_transaction(transaction_id)
                if fail:
                    raise RuntimeError("the worker died before committing")
                db.session.commit()
            except RuntimeError:
                db.session.rollback()
            except BaseException as exc:
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=bill, args=(t, n == 7)) for n, t in enumerate(ids)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    with app.app_context():
        numbers = receipt_numbers()
        assert sorted(numbers.values()) == list(range(1, 20))
        assert ids[7] not in numbers
        assert db.session.scalar(select(ReceiptCounter.last_number)) == 19


@pytest.mark.parametrize("any_db_app", ["sqlite"], indirect=True)  # nothing database-specific
def test_receipts_as_html_and_pdf_for_the_customer_and_the_operator(world):
    app = world["app"]
    app.config.update(
        OPERATOR_NAME="Volt & Co", OPERATOR_ADDRESS="1 Grid Street, Lyon", OPERATOR_TAX_ID="FR12345678901"
    )
    transaction_id = start(world, "ADA")
    stop(world, transaction_id, 1000 + 7300, minute=45)
    session_id = db.session.scalar(
        select(ChargingSession.id).where(ChargingSession.transaction_id == transaction_id)
    )
    client = app.test_client()

    def bearer(email: str) -> dict:
        token = client.post("/api/auth/login", json={"email": email, "password": "password-123"})
        return {"Authorization": f"Bearer {token.get_json()['access_token']}"}

    ada = bearer("ada@example.test")
    page = client.get(f"/api/user/charging/sessions/{session_id}/receipt?format=html", headers=ada)
    assert (page.status_code, page.mimetype) == (200, "text/html")
    html = page.get_data(as_text=True)
    for text in (
        "Volt &amp; Co",
        "1 Grid Street, Lyon",
        "FR12345678901",
        "Receipt R-000001",
        "5.18 EUR",
        "0.86 EUR",
        "Night",
    ):
        assert text in html
    assert (
        client.get(
            f"/api/user/charging/sessions/{session_id}/receipt", headers=bearer("bob@example.test")
        ).status_code
        == 404
    )
    assert (
        client.get(f"/api/user/charging/sessions/{session_id}/receipt?format=doc", headers=ada).status_code
        == 422
    )

    users.create_user("op@example.test", "password-123", role="operator")
    document = client.get(
        f"/api/cms/transactions/{transaction_id}/receipt?format=pdf", headers=bearer("op@example.test")
    )
    assert (document.status_code, document.mimetype) == (200, "application/pdf")
    assert document.data.startswith(b"%PDF-")
    if shutil.which("pdftotext") is None:
        pytest.fail("pdftotext is needed (apt-get install poppler-utils; .ci/services installs it)")
    text = subprocess.run(
        ["pdftotext", "-layout", "-", "-"], input=document.data, capture_output=True, check=True
    ).stdout.decode()
    assert "R-000001" in text and "Volt & Co" in text
    assert [line.split() for line in text.splitlines() if line.strip().startswith("Total")] == [
        ["Total", "5.18", "EUR"]
    ]
