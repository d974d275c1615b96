"""Every kWh billed to someone: transactions no app session was waiting for (a start after the REST
call gave up, a customer's tag used without the app, a second start on a busy connector), through
the transactions actor run twice and concurrently, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from flask import Flask
from sqlalchemy import select

from actors.billing import settle_session
from actors.metering import process_meter_values
from actors.transactions import process_transaction_messages
from csms.extensions import db
from csms.models import (
    ChargingSession,
    IdTag,
    LedgerEntry,
    QueuedCommand,
    SessionState,
    Tariff,
    Transaction,
    Wallet,
)
from csms.ocpp.open_transactions import OpenTransactions
from csms.services import sessions, transactions, users, wallet
from tests.builders import a_charge_point
from tests.test_pipeline_idempotency import CP, exchange, run_twice

TAG = "UNPLANNED-TAG"


@pytest.fixture
def world(any_db_app: Flask):
    """A charger with two connectors, 0.25 per kWh, and a customer (tag `TAG`) with 100.00."""
    point = a_charge_point(charge_point_id=CP, connectors=2)
    db.session.add(
        Tariff(
            name="T", currency="EUR", energy_price=Decimal("0.25"), tax_percent=Decimal(0), is_default=True
        )
    )
    db.session.commit()
    user = users.create_user("unplanned@example.test", "password-123", id_tag=TAG)
    wallet_id = db.session.scalar(select(Wallet.id).where(Wallet.user_id == user.id))
    wallet.top_up(wallet_id, 10_000, reference="seed")
    return {"app": any_db_app, "point": point.id, "user": user.id, "wallet": wallet_id}


def start(world, *, minute: int = 0, meter: int = 1000, tag: str = TAG, status: str = "Accepted") -> int:
    """A StartTransaction as the gateway answers and hands it off, applied twice; its transaction id."""
    at = datetime(2026, 9, 1, 10, minute, tzinfo=UTC)
    [transaction_id] = transactions.allocate_transaction_ids(
        [transactions.Start(world["point"], 1, tag, at, meter)]
    )
    request = {"connectorId": 1, "idTag": tag, "meterStart": meter, "timestamp": at.isoformat()}
    answer = {"transactionId": transaction_id, "idTagInfo": {"status": status}}
    run_twice(world["app"], process_transaction_messages, [exchange("StartTransaction", request, answer)])
    return transaction_id


def stop(world, transaction_id: int, meter: int, minute: int = 59) -> None:
    request = {
        "transactionId": transaction_id,
        "meterStop": meter,
        "timestamp": f"2026-09-01T10:{minute}:00Z",
    }
    run_twice(world["app"], process_transaction_messages, [exchange("StopTransaction", request, {})])


def session_of(transaction_id: int) -> ChargingSession | None:
    return db.session.scalar(select(ChargingSession).where(ChargingSession.transaction_id == transaction_id))


def ledger(session_id: int) -> list[tuple[str, int]]:
    rows = db.session.execute(
        select(LedgerEntry.kind, LedgerEntry.amount_minor)
        .where(LedgerEntry.session_id == session_id)
        .order_by(LedgerEntry.id)
    )
    return [tuple(row) for row in rows]


def balance(world) -> tuple[int, int]:
    found = db.session.get(Wallet, world["wallet"])
    return found.available_minor, found.held_minor


def stop_requests() -> list[tuple[str, dict, str]]:
    rows = db.session.execute(
        select(QueuedCommand.dedup_key, QueuedCommand.payload, QueuedCommand.reason).order_by(
            QueuedCommand.id
        )
    )
    return [tuple(row) for row in rows]


def test_a_start_after_the_session_gave_up_is_billed_from_a_new_hold_of_its_amount(world):
    gave_up = sessions.open_session(world["user"], CP, 1, 3000).id
    assert sessions.release(gave_up, SessionState.FAILED, "the charger did not answer")
    assert balance(world) == (10_000, 0)

    transaction_id = start(world)
    adopted = session_of(transaction_id)
    adopted_id = adopted.id
    assert adopted_id != gave_up
    assert (adopted.user_id, adopted.state, adopted.prepaid_minor) == (world["user"], "charging", 3000)
    assert ledger(adopted.id) == [("hold", 3000)]
    description = db.session.scalar(
        select(LedgerEntry.description).where(LedgerEntry.session_id == adopted.id)
    )
    assert description == (
        f"Prepaid for session {adopted.id}: transaction {transaction_id} at {CP}/1 "
        f"started after session {gave_up} gave up"
    )
    assert balance(world) == (7000, 3000)
    assert stop_requests() == []

    stop(world, transaction_id, meter=11_000)  # 10 kWh x 0.25
    run_twice(world["app"], settle_session, adopted_id)
    assert ledger(adopted_id) == [("hold", 3000), ("capture", 250), ("refund", 2750)]
    assert balance(world) == (9750, 0)
    assert (db.session.get(ChargingSession, adopted_id).state, session_of(transaction_id).energy_wh) == (
        "completed",
        10_000,
    )


def test_a_customer_tag_used_without_the_app_is_billed_from_the_default_hold(world):
    transaction_id = start(world)
    adopted = session_of(transaction_id)
    assert (adopted.state, adopted.prepaid_minor) == ("charging", 2000)  # UNPLANNED_HOLD
    assert ledger(adopted.id) == [("hold", 2000)]
    meter = exchange(
        "MeterValues",
        {
            "connectorId": 1,
            "transactionId": transaction_id,
            "meterValue": [{"timestamp": "2026-09-01T10:30:00Z", "sampledValue": [{"value": "5000"}]}],
        },
        {},
    )
    run_twice(world["app"], process_meter_values, [meter])
    assert (session_of(transaction_id).energy_wh, session_of(transaction_id).cost_minor) == (4000, 100)


def test_a_wallet_short_of_the_hold_gives_what_it_has_and_the_charger_is_asked_to_stop(world):
    db.session.get(Wallet, world["wallet"]).available_minor = 500
    db.session.commit()
    transaction_id = start(world)
    adopted = session_of(transaction_id)
    assert (adopted.state, adopted.prepaid_minor) == ("stopping", 500)
    assert balance(world) == (0, 500)
    assert stop_requests() == [
        (
            f"session:{adopted.id}:remote-stop",
            {"transactionId": transaction_id},
            "the wallet cannot cover the hold",
        )
    ]
    adopted_id = adopted.id
    stop(world, transaction_id, meter=5000)  # 4 kWh cost 1.00, within what was held
    run_twice(world["app"], settle_session, adopted_id)
    assert ledger(adopted_id) == [("hold", 500), ("capture", 100), ("refund", 400)]
    assert balance(world) == (400, 0)


def test_a_start_not_answered_accepted_is_billed_and_the_charger_asked_to_stop(world):
    transaction_id = start(world, status="ConcurrentTx")
    adopted = session_of(transaction_id)
    assert (adopted.state, adopted.prepaid_minor) == ("stopping", 2000)
    assert stop_requests() == [
        (
            f"session:{adopted.id}:remote-stop",
            {"transactionId": transaction_id},
            "started although answered ConcurrentTx",
        )
    ]


def test_nobody_to_bill_an_empty_wallet_is_stopped_an_ownerless_tag_left_alone(world):
    db.session.get(Wallet, world["wallet"]).available_minor = 0
    db.session.add(IdTag(id_tag="FLEET-CARD"))  # an operator's card: no owner, no wallet
    db.session.commit()
    empty = start(world)
    assert session_of(empty) is None
    assert stop_requests() == [
        (f"transaction:{empty}:remote-stop", {"transactionId": empty}, "the wallet is empty")
    ]
    stop(world, empty, meter=1500)
    fleet = start(world, minute=5, meter=1500, tag="FLEET-CARD")
    assert session_of(fleet) is None
    assert len(stop_requests()) == 1


def test_a_connector_held_by_another_customers_waiting_session_is_stopped(world):
    other = users.create_user("other@example.test", "password-123", id_tag="OTHER-TAG")
    other_wallet = db.session.scalar(select(Wallet.id).where(Wallet.user_id == other.id))
    wallet.top_up(other_wallet, 1000, reference="seed-other")
    waiting = sessions.open_session(other.id, CP, 1, 500).id
    transaction_id = start(world)
    assert session_of(transaction_id) is None
    assert db.session.get(ChargingSession, waiting).state == "requested"  # left to its own start
    assert stop_requests() == [
        (
            f"transaction:{transaction_id}:remote-stop",
            {"transactionId": transaction_id},
            f"connector held by session {waiting}",
        )
    ]
    assert balance(world) == (10_000, 0)


def test_a_second_start_on_a_busy_connector_closes_the_first_and_bills_both(world):
    app_session = sessions.open_session(world["user"], CP, 1, 3000).id
    first = start(world, meter=1000)
    assert session_of(first).id == app_session

    second = start(world, minute=30, meter=4000, status="ConcurrentTx")
    closed = db.session.get(Transaction, first)
    assert (closed.state, closed.meter_stop_wh, closed.energy_wh, closed.stop_reason) == (
        "stopped",
        4000,
        3000,
        "Other",
    )
    assert closed.stopped_at == datetime(2026, 9, 1, 10, 30, tzinfo=UTC)
    assert db.session.get(ChargingSession, app_session).state == "completed"
    assert ledger(app_session) == [("hold", 3000), ("capture", 75), ("refund", 2925)]

    adopted = session_of(second)
    assert (adopted.state, adopted.prepaid_minor) == ("stopping", 2000)
    adopted_id = adopted.id
    stop(world, second, meter=8000)
    run_twice(world["app"], settle_session, adopted_id)
    assert ledger(adopted_id) == [("hold", 2000), ("capture", 100), ("refund", 1900)]
    assert balance(world) == (10_000 - 75 - 100, 0)


def test_an_older_transaction_whose_meter_restarted_ends_at_its_last_reading(world):
    first = start(world, meter=1000)
    db.session.get(Transaction, first).meter_last_wh = 3500
    db.session.commit()
    start(world, minute=30, meter=0)  # the charger rebooted: its register starts again from zero
    closed = db.session.get(Transaction, first)
    assert (closed.meter_stop_wh, closed.energy_wh) == (3500, 2500)
    assert ledger(session_of(first).id) == [("hold", 2000), ("capture", 63), ("refund", 1937)]


def handed_off_start(world, transaction_id: int, at: datetime, meter: int) -> dict:
    request = {"connectorId": 1, "idTag": TAG, "meterStart": meter, "timestamp": at.isoformat()}
    answer = {"transactionId": transaction_id, "idTagInfo": {"status": "Accepted"}}
    return exchange("StartTransaction", request, answer)


def test_starts_applied_out_of_order_are_both_billed(world):
    """The first start's message is applied after the second's (a retried batch): the second takes
    the waiting app session and closes the first, which is billed at once to its tag's owner, from
    the wallet (csms.services.billing.bill_transaction); its late start then bills nothing again."""
    app_session = sessions.open_session(world["user"], CP, 1, 3000).id
    at = [datetime(2026, 9, 1, 10, m, tzinfo=UTC) for m in (0, 30)]
    first, second = transactions.allocate_transaction_ids(
        [
            transactions.Start(world["point"], 1, TAG, at[0], 1000),
            transactions.Start(world["point"], 1, TAG, at[1], 5000),
        ]
    )
    run_twice(world["app"], process_transaction_messages, [handed_off_start(world, second, at[1], 5000)])
    assert session_of(second).id == app_session
    run_twice(world["app"], process_transaction_messages, [handed_off_start(world, first, at[0], 1000)])
    assert session_of(first) is None
    late = db.session.get(Transaction, first)
    assert (late.state, late.energy_wh, late.cost_minor, late.billing) == ("stopped", 4000, 100, "wallet")
    charged = db.session.execute(
        select(LedgerEntry.kind, LedgerEntry.amount_minor).where(LedgerEntry.transaction_id == first)
    )
    assert [tuple(row) for row in charged] == [("charge", 100)]
    assert balance(world) == (10_000 - 100 - 3000, 3000)  # the app session still holds its 30.00


def test_a_stop_applied_before_its_unplanned_start_is_billed_at_once(world):
    at = datetime(2026, 9, 1, 10, 0, tzinfo=UTC)
    [transaction_id] = transactions.allocate_transaction_ids(
        [transactions.Start(world["point"], 1, TAG, at, 1000)]
    )
    stop(world, transaction_id, meter=3000)
    run_twice(world["app"], process_transaction_messages, [handed_off_start(world, transaction_id, at, 1000)])
    adopted = session_of(transaction_id)
    assert (adopted.state, adopted.energy_wh, adopted.cost_minor) == ("completed", 2000, 50)
    assert ledger(adopted.id) == [("hold", 2000), ("capture", 50), ("refund", 1950)]
    assert stop_requests() == []


def test_the_connection_answers_concurrent_tx_for_the_same_tag_on_a_busy_connector():
    seen = OpenTransactions()
    assert seen.started(1, 10, "A", "Accepted") == "Accepted"
    assert seen.started(1, 10, "A", "Accepted") == "Accepted"  # a resend: same id, same answer
    assert seen.started(2, 11, "A", "Accepted") == "Accepted"  # another connector
    assert seen.started(1, 12, "A", "Accepted") == "ConcurrentTx"
    assert seen.started(1, 12, "A", "Accepted") == "ConcurrentTx"  # its resend too
    assert seen.started(1, 10, "A", "Accepted") == "Accepted"  # a late copy of the older one
    assert seen.started(1, 13, "B", "Accepted") == "Accepted"  # another tag: the worker closes 12
    assert seen.started(1, 14, "B", "Invalid") == "Invalid"  # not accepted anyway: said as it is
    seen.stopped(14)
    assert seen.started(1, 15, "B", "Accepted") == "Accepted"  # the connector was free again
