"""Every model round-trips on SQLite and PostgreSQL, and the constraints that make redelivery and
money safe are enforced by the database itself."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, StatementError

from csms.extensions import db
from csms.models import (
    ChargingSession,
    CmsEvent,
    CommandAudit,
    LedgerEntry,
    MeterSample,
    OcppMessage,
    OutboxMessage,
    QueuedCommand,
    Transaction,
    Wallet,
)
from tests.builders import (
    a_charge_point,
    a_station,
    a_tariff,
    a_transaction,
    a_user,
    a_wallet,
    an_id_tag,
)

T0 = datetime(2026, 3, 1, 8, 30, 15, 123000, tzinfo=UTC)


def _reloaded(obj):
    """The object as read back from the database (every attribute reloaded)."""
    model, pk = type(obj), obj.id
    db.session.expire_all()
    return db.session.get(model, pk)


def _assert_round_trip(obj, **expected):
    db.session.add(obj)
    db.session.commit()
    again = _reloaded(obj)
    for field, value in expected.items():
        assert getattr(again, field) == value, field
    return again


def test_user_and_id_tag(any_db_app):
    user = a_user(email="ada@example.test", role="operator")
    again = _reloaded(user)
    assert (again.email, again.role) == ("ada@example.test", "operator")
    tag = an_id_tag(id_tag="RFID-1", user_id=user.id, expiry_date=T0)
    again = _reloaded(tag)
    assert again.user.email == "ada@example.test"
    assert again.expiry_date == T0
    assert again.status == "Accepted"


def test_wallet_and_ledger(any_db_app):
    wallet = a_wallet(available_minor=1234)
    entry = LedgerEntry(
        wallet_id=wallet.id, kind="topup", amount_minor=1234, currency="EUR", reference="psp-1"
    )
    again = _assert_round_trip(entry, kind="topup", amount_minor=1234, reference="psp-1")
    assert again.created_at.tzinfo is not None


def test_station_charge_point_connectors_and_tariff(any_db_app):
    tariff = a_tariff(
        energy_price=Decimal("0.3456"), time_price=Decimal("1.2000"), tax_percent=Decimal("19.00")
    )
    tariff_id = tariff.id
    station = a_station(latitude=Decimal("52.520008"), longitude=Decimal("13.404954"))
    point = a_charge_point(connectors=2, station_id=station.id, tariff_id=tariff.id, vendor="ACME")
    again = _reloaded(point)
    assert [c.connector_id for c in again.connectors] == [0, 1, 2]
    assert again.station.latitude == Decimal("52.520008")
    tariff_again = db.session.get(type(tariff), tariff_id)
    assert tariff_again.energy_price == Decimal("0.3456")
    assert tariff_again.time_price == Decimal("1.2000")
    assert tariff_again.tax_percent == Decimal("19.00")


def test_transaction_session_and_samples(any_db_app):
    point = a_charge_point()
    user = a_user()
    tx = a_transaction(point, meter_start_wh=12_000_000_000)  # a big register must fit (BIGINT)
    session = ChargingSession(
        user_id=user.id,
        charge_point_id=point.id,
        connector_id=1,
        id_tag="TAG",
        transaction_id=tx.id,
        currency="EUR",
        prepaid_minor=2000,
        charger_response={"status": "Accepted"},
    )
    again = _assert_round_trip(session, state="requested", prepaid_minor=2000)
    assert again.transaction.meter_start_wh == 12_000_000_000
    assert again.charger_response == {"status": "Accepted"}
    sample = MeterSample(
        charge_point_id=point.id,
        connector_id=1,
        transaction_id=tx.id,
        sampled_at=T0,
        measurand="Energy.Active.Import.Register",
        unit="Wh",
        value=Decimal("1500.5"),
        raw_value="1.5005",
        raw_unit="kWh",
    )
    assert _assert_round_trip(sample, value=Decimal("1500.5"), phase="", sampled_at=T0)


def test_logs_and_outbox(any_db_app):
    message = OcppMessage(
        event_id="e-1",
        charge_point_id="CP-1",
        direction="in",
        message_type=2,
        unique_id="42",
        action="Heartbeat",
        payload={},
        received_at=T0,
    )
    _assert_round_trip(message, action="Heartbeat", payload={}, received_at=T0)
    audit = CommandAudit(
        event_id="c-1",
        charge_point_id="CP-1",
        action="Reset",
        payload={"type": "Soft"},
        requested_at=T0,
        outcome="answered",
        response={"status": "Accepted"},
        latency_ms=12,
    )
    _assert_round_trip(audit, response={"status": "Accepted"}, latency_ms=12)
    event = CmsEvent(event_id="x-1", type="cms.station.created", entity_type="station", entity_id="1")
    _assert_round_trip(event, type="cms.station.created")
    outbox = OutboxMessage(message_id="m-1", queue_name="ocpp_messages", body=b"\x00{}")
    _assert_round_trip(outbox, body=b"\x00{}")
    queued = QueuedCommand(
        command_id="6f1c2a4e-0000-4000-8000-000000000001",
        charge_point_id="CP-1",
        action="RemoteStopTransaction",
        payload={"transactionId": 5},
        reason="prepaid amount used up",
        dedup_key="session:1:remote-stop",
        expires_at=datetime(2026, 7, 1, 12, tzinfo=UTC),
    )
    _assert_round_trip(
        queued, payload={"transactionId": 5}, state="queued", sent_at=None, response=None, error=None
    )


def test_times_come_back_as_aware_utc(any_db_app):
    paris = timezone(timedelta(hours=1))
    tx = a_transaction(started_at=datetime(2026, 1, 1, 13, 0, tzinfo=paris))
    again = _reloaded(tx)
    assert again.started_at == datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert again.started_at.utcoffset() == timedelta(0)


def test_naive_times_are_refused(any_db_app):
    with pytest.raises(StatementError, match="naive datetime"):
        a_transaction(started_at=datetime(2026, 1, 1, 12, 0))
    db.session.rollback()


def test_wallet_cannot_go_negative(any_db_app):
    wallet = a_wallet(available_minor=100)
    wallet.available_minor = -1
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()
    assert db.session.get(Wallet, wallet.id).available_minor == 100


def test_one_capture_per_session(any_db_app):
    point, user = a_charge_point(), a_user()
    wallet = a_wallet(user)
    session = ChargingSession(
        user_id=user.id, charge_point_id=point.id, connector_id=1, id_tag="T", currency="EUR", prepaid_minor=1
    )
    db.session.add(session)
    db.session.commit()
    for _ in range(2):
        db.session.add(
            LedgerEntry(
                wallet_id=wallet.id, kind="capture", amount_minor=1, currency="EUR", session_id=session.id
            )
        )
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()


def test_only_one_default_tariff(any_db_app):
    a_tariff(is_default=True)
    a_tariff(is_default=None)
    a_tariff(is_default=None)
    with pytest.raises(IntegrityError):
        a_tariff(is_default=True)
    db.session.rollback()


def test_one_active_session_per_connector(any_db_app):
    point, user = a_charge_point(), a_user()

    def session(state):
        return ChargingSession(
            user_id=user.id,
            charge_point_id=point.id,
            connector_id=1,
            id_tag="T",
            currency="EUR",
            prepaid_minor=500,
            state=state,
        )

    db.session.add_all([session("completed"), session("failed"), session("charging")])
    db.session.commit()
    db.session.add(session("requested"))
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()


def test_resent_start_transaction_hits_the_start_key(any_db_app):
    point = a_charge_point()
    first = a_transaction(point, started_at=T0)
    with pytest.raises(IntegrityError):
        a_transaction(point, started_at=T0)
    db.session.rollback()
    second = a_transaction(point, started_at=T0 + timedelta(seconds=1))
    assert second.id > first.id
    assert db.session.scalar(select(Transaction.id).where(Transaction.started_at == T0)) == first.id


def test_meter_samples_are_stored_once(any_db_app):
    point = a_charge_point()

    def sample():
        return MeterSample(
            charge_point_id=point.id,
            connector_id=1,
            sampled_at=T0,
            measurand="Energy.Active.Import.Register",
            unit="Wh",
            value=Decimal(1),
            raw_value="1",
        )

    db.session.add(sample())
    db.session.commit()
    db.session.add(sample())
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()
