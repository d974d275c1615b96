"""Acknowledged means applied (issue #14, findings 1 and 2): a frame the gateway answered with a
CALLRESULT takes effect whatever its values. Values the OCPP schemas allow but the database cannot
hold (integers beyond INTEGER/BIGINT, "1e17" and "1e999999999" samples, NUL characters, year-9999
timestamps) are clamped, replaced or dropped with a logged reason; a StopTransaction always stops,
settles and frees the connector. The actors' code runs directly against SQLite and PostgreSQL."""

from __future__ import annotations

import functools
import logging
import random
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from flask import Flask
from sqlalchemy import func, select

from actors.billing import settle_session
from actors.metering import process_meter_values
from actors.storage import record_exchanges
from actors.transactions import process_transaction_messages
from csms.extensions import db
from csms.models import (
    ChargingSession,
    Connector,
    LedgerEntry,
    MeterSample,
    OcppMessage,
    SessionState,
    Transaction,
)
from csms.services import bounds, metering, sessions, transactions
from csms.services.clock import parse_utc
from tests.builders import a_charge_point
from tests.support import exchanges

CP = "BOUNDS-1"
BIG = 2**63  # one beyond BIGINT
ABSURD_SAMPLES = ["1e17", "-1e17", "1e999999999", "NaN", "-Infinity", "sNaN", "12 kWh", "1\x00"]


exchange = functools.partial(exchanges.exchange, CP)


@pytest.fixture
def world(any_db_app: Flask):
    """A charger, a tariff (0.25/kWh), a customer charging on connector 1 with 30.00 prepaid, the
    transaction started at 1000 Wh and metered up to 3000 Wh."""
    world = exchanges.a_customer_waiting(any_db_app, CP, "BOUNDS-TAG", "bounds@example.test")
    transaction_id = world["transaction_id"]
    start = {"connectorId": 1, "idTag": "BOUNDS-TAG", "meterStart": 1000, "timestamp": "2026-09-01T10:00:00Z"}
    apply(
        process_transaction_messages,
        exchange(
            "StartTransaction", start, {"transactionId": transaction_id, "idTagInfo": {"status": "Accepted"}}
        ),
    )
    apply(process_meter_values, meter_values(transaction_id, [{"value": "3000"}]))
    return world


def apply(actor, *exchanges: dict) -> None:
    """Run the actor's function on a batch: it raises if an exchange could not be applied."""
    actor.fn(list(exchanges))
    db.session.remove()


def meter_values(transaction_id, sampled: list[dict], connector_id=1, minute: int = 30) -> dict:
    payload = {
        "connectorId": connector_id,
        "transactionId": transaction_id,
        "meterValue": [{"timestamp": f"2026-09-01T10:{minute:02d}:00Z", "sampledValue": sampled}],
    }
    return exchange("MeterValues", payload)


def stop(world, **overrides) -> dict:
    payload = {
        "transactionId": world["transaction_id"],
        "meterStop": 5000,
        "timestamp": "2026-09-01T11:00:00Z",
        "reason": "Local",
        **overrides,
    }
    return exchange("StopTransaction", payload, {"idTagInfo": {"status": "Accepted"}})


def stored_frames(action: str) -> int:
    return db.session.scalar(
        select(func.count()).select_from(OcppMessage).where(OcppMessage.action == action)
    )


def assert_settled(world, *, energy_wh: int, captured: int) -> None:
    """Stopped, billed once (capture and refund of the 30.00 hold), and the connector free again."""
    transaction = db.session.get(Transaction, world["transaction_id"])
    assert (transaction.state, transaction.energy_wh) == ("stopped", energy_wh)
    settle_session.fn(world["session_id"])
    db.session.remove()
    session = db.session.get(ChargingSession, world["session_id"])
    assert (session.state, session.cost_minor) == ("completed", captured)
    ledger = db.session.execute(
        select(LedgerEntry.kind, LedgerEntry.amount_minor)
        .where(LedgerEntry.session_id == world["session_id"])
        .order_by(LedgerEntry.id)
    ).all()
    assert [tuple(row) for row in ledger] == [
        ("hold", 3000),
        ("capture", captured),
        ("refund", 3000 - captured),
    ]
    assert stored_frames("StopTransaction") == 2
    # the connector takes a new app session (no 409 connector_busy)
    assert sessions.open_session(world["user_id"], CP, 1, 500).state == SessionState.REQUESTED


# --- finding 1: StopTransaction --------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, energy_wh",
    [
        ({"meterStop": BIG}, 2000),  # bigint out of range: the highest register reading (3000) stands
        ({"meterStop": -5}, 2000),
        ({"meterStop": 10**17}, 2000),
        (
            {"meterStop": 1.8446744073709552e19},
            2000,
        ),  # beyond 64 bits reads as a float (the gateway refuses those; the worker copes)
        (
            {
                "transactionData": [
                    {
                        "timestamp": "2026-09-01T10:59:00Z",
                        "sampledValue": [{"value": v} for v in ABSURD_SAMPLES] + [{"value": "4500"}],
                    }
                ]
            },
            4000,
        ),
        (
            {
                "meterStop": BIG,
                "transactionData": [
                    {"timestamp": "2026-09-01T10:59:00Z", "sampledValue": [{"value": "4500"}]}
                ],
            },
            3500,
        ),
        ({"idTag": "BOUNDS\x00TAG"}, 4000),
        ({"timestamp": "9999-12-31T23:00:00-05:00"}, 4000),
    ],
    ids=[
        "bigint",
        "negative",
        "1e17",
        "beyond-64-bits",
        "absurd-samples",
        "fallback-to-data",
        "nul",
        "year-9999",
    ],
)
def test_an_answered_stop_always_stops_settles_and_frees_the_connector(world, overrides, energy_wh, caplog):
    with caplog.at_level(logging.WARNING, logger="actors.batch"):
        apply(process_transaction_messages, stop(world, **overrides))
    assert_settled(world, energy_wh=energy_wh, captured=(energy_wh * 25 + 500) // 1000)  # 0.25/kWh, half up
    if overrides.keys() - {"timestamp"}:
        assert f"{CP}: StopTransaction u1 applied with adjustments" in caplog.text


def test_a_stop_with_every_absurd_value_at_once(world):
    absurd = stop(
        world,
        meterStop=BIG,
        idTag="\x00",
        transactionData=[
            {"timestamp": "0001-01-01T00:00:00+05:00", "sampledValue": [{"value": v} for v in ABSURD_SAMPLES]}
        ],
    )
    apply(process_transaction_messages, absurd)
    assert_settled(world, energy_wh=2000, captured=50)
    assert db.session.get(Transaction, world["transaction_id"]).stop_id_tag == "\ufffd"


# --- finding 2: MeterValues, StatusNotification, DataTransfer, Authorize ---------------------------


def test_meter_values_keep_every_sample_but_the_absurd_ones(world, caplog):
    sampled = [{"value": v} for v in ABSURD_SAMPLES] + [
        {"value": "4200"},
        {"value": "230", "measurand": "Voltage", "phase": "L1"},
    ]
    with caplog.at_level(logging.WARNING, logger="actors.batch"):
        apply(process_meter_values, meter_values(world["transaction_id"], sampled, minute=40))
    values = db.session.scalars(
        select(MeterSample.value).where(MeterSample.sampled_at == datetime(2026, 9, 1, 10, 40, tzinfo=UTC))
    ).all()
    assert sorted(values) == [Decimal("230"), Decimal("4200")]
    assert db.session.get(Transaction, world["transaction_id"]).meter_last_wh == 4200
    assert db.session.get(ChargingSession, world["session_id"]).energy_wh == 3200
    assert "'1e999999999' Energy.Active.Import.Register is not a number: dropped" in caplog.text
    assert "'1e17' Energy.Active.Import.Register beyond what a meter reads: dropped" in caplog.text


def test_meter_values_with_out_of_range_ids_are_logged(world):
    batch = [
        meter_values(BIG, [{"value": "9000"}], minute=41),  # no such transaction: samples kept
        meter_values(world["transaction_id"], [{"value": "4100"}], connector_id=BIG, minute=42),
        meter_values(None, [{"value": "1e999999999", "unit": "kWh"}], minute=43),
    ]
    del batch[2]["frames"][0]["payload"]["transactionId"]
    apply(process_meter_values, *batch)
    assert stored_frames("MeterValues") == 2 + 6
    assert db.session.scalar(select(func.count()).where(MeterSample.value == 9000)) == 1
    # the reading of a known transaction counts even when its connectorId does not fit
    assert db.session.get(Transaction, world["transaction_id"]).meter_last_wh == 4100


def test_status_data_transfer_and_authorize_with_unstorable_values(world):
    batch = [
        exchange("StatusNotification", {"connectorId": BIG, "errorCode": "NoError", "status": "Available"}),
        exchange(
            "StatusNotification",
            {
                "connectorId": 2,
                "errorCode": "OtherError",
                "status": "Faulted",
                "info": "a\x00b",
                "vendorId": "\x00",
            },
        ),
        exchange(
            "DataTransfer",
            {"vendorId": "V\x00", "messageId": "\x00", "data": "x\x00y"},
            {"status": "Accepted"},
        ),
        exchange("Authorize", {"idTag": "TAG\x00"}, {"idTagInfo": {"status": "Invalid"}}),
        exchange("Heartbeat", {"\x00key": 1}, {"currentTime": "2026-09-01T10:00:00Z"}),
    ]
    apply(record_exchanges, *batch)
    assert (
        db.session.scalar(select(func.count()).select_from(OcppMessage)) == 4 + 2 * 5
    )  # the fixture's four and these
    connector = db.session.scalar(select(Connector).where(Connector.connector_id == 2))
    assert (connector.status, connector.info, connector.vendor_id) == ("Faulted", "a\ufffdb", "\ufffd")
    data = db.session.scalar(select(OcppMessage.payload).where(OcppMessage.action == "DataTransfer"))
    assert data == {"vendorId": "V\ufffd", "messageId": "\ufffd", "data": "x\ufffdy"}
    heartbeat = db.session.scalar(select(OcppMessage.payload).where(OcppMessage.action == "Heartbeat"))
    assert heartbeat == {"\ufffdkey": 1}


def test_a_batch_with_absurd_values_is_applied_whole(world, caplog):
    """No fallback to one by one: the batch commits in one go."""
    batch = [
        meter_values(world["transaction_id"], [{"value": "1e17"}, {"value": "3300"}], minute=50),
        meter_values(world["transaction_id"], [{"value": "3400"}], connector_id=BIG, minute=51),
        meter_values(world["transaction_id"], [{"value": "3500\x00"}, {"value": "3500"}], minute=52),
    ]
    with caplog.at_level(logging.WARNING):
        apply(process_meter_values, *batch)
    assert "one by one" not in caplog.text
    assert db.session.get(Transaction, world["transaction_id"]).meter_last_wh == 3500


def test_charger_call_errors_and_unknown_actions_fit_the_message_log(world):
    unknown = exchange("X" * 300, {"a": "\x00"})
    unknown["frames"][1].update(message_type=4, error_code="NotImplemented", error_description="d" * 1000)
    unknown["frames"][0]["unique_id"] = "u" * 100
    apply(record_exchanges, unknown)
    call, error = db.session.scalars(
        select(OcppMessage).where(OcppMessage.action == "X" * 40).order_by(OcppMessage.message_type)
    ).all()
    assert (call.unique_id, call.payload) == ("u" * 36, {"a": "\ufffd"})
    assert (error.error_code, error.error_description) == ("NotImplemented", "d" * 255)


# --- the pieces ------------------------------------------------------------------------------------


def test_bounds_of_integers_and_readings():
    assert [bounds.int32(v) for v in (0, 2**31 - 1, 2**31, -(2**31), BIG, 1.0, True, "1", None)] == [
        0,
        2**31 - 1,
        None,
        -(2**31),
        None,
        None,
        None,
        None,
        None,
    ]
    assert [bounds.reading(v) for v in (0, 10**16 - 1, 10**16, -1, BIG, 5.0)] == [
        0,
        10**16 - 1,
        None,
        None,
        None,
        None,
    ]


def test_clean_exchange_replaces_nul_and_cuts_frame_fields():
    raw = exchange("DataTransfer", {"vendorId": "V", "data": "ok"})
    assert bounds.clean_exchange(raw) == []
    raw = exchange("DataTransfer", {"vendorId": "V", "data": ["\x00", {"k\x00": BIG * BIG}]})
    raw["command"] = {"error_code": "E" * 50, "error_description": "\x00"}
    notes = bounds.clean_exchange(raw)
    assert raw["frames"][0]["payload"] == {"vendorId": "V", "data": ["\ufffd", {"k\ufffd": BIG * BIG}]}
    assert raw["command"] == {"error_code": "E" * 40, "error_description": "\ufffd"}
    assert notes == ["NUL characters replaced by U+FFFD", "error_code cut to 40 characters"]


def test_sample_values_are_rounded_as_stored_and_bounded_after_rounding():
    assert bounds.sample(Decimal("1.00005")) == Decimal("1.0001")
    assert bounds.sample(Decimal("-9999999999999999.9999")) == Decimal("-9999999999999999.9999")
    assert bounds.sample(Decimal("9999999999999999.99995")) is None  # 10^16 once rounded
    assert [bounds.sample(Decimal(v)) for v in ("1e16", "NaN", "-Infinity", "1e-30")] == [None, None, None, 0]


def test_timestamps_beyond_what_a_datetime_holds_in_utc_are_clamped():
    assert parse_utc("9999-12-31T23:00:00-05:00") == datetime.max.replace(tzinfo=UTC)
    assert parse_utc("0001-01-01T00:00:00+05:00") == datetime.min.replace(tzinfo=UTC)
    assert parse_utc("2026-09-01T12:00:00+02:00") == datetime(2026, 9, 1, 10, 0, tzinfo=UTC)


def test_parse_drops_absurd_samples_with_a_reason():
    dropped: list[str] = []
    samples = metering.parse(
        [
            {
                "timestamp": "2026-09-01T10:00:00Z",
                "sampledValue": [{"value": v} for v in [*ABSURD_SAMPLES, "7"]],
            }
        ],
        dropped,
    )
    assert [s.value for s in samples] == [Decimal("7")]
    assert len(dropped) == len(ABSURD_SAMPLES)


# --- a fuzzer --------------------------------------------------------------------------------------

_INTS = [0, 1, -1, 2**31 - 1, 2**31, -(2**31) - 1, 2**53, 2**63 - 1, 2**63, -(2**63), 1.8446744073709552e19]
_STRINGS = ["", "\x00", "a\x00", "\x00" * 20, "\ufffd", "é" * 20, "x" * 20]
_VALUES = [*ABSURD_SAMPLES, "0", "-0", "0.00001", "9999999999999999.99995", "1E+15", "Infinity", "", " 1"]
_TIMES = [
    "2026-09-01T10:00:00Z",
    "9999-12-31T23:59:59-12:00",
    "0001-01-01T00:00:00+14:00",
    "2026-09-01T10:00:00",
]


def _fuzzed(rng: random.Random, transaction_id: int) -> dict:
    tid = rng.choice([transaction_id, *_INTS])
    samples = [
        {
            "value": rng.choice(_VALUES),
            **rng.choice([{}, {"unit": "kWh"}, {"measurand": "Power.Active.Import"}]),
        }
        for _ in range(rng.randint(1, 4))
    ]
    kind = rng.randrange(5)
    if kind == 0:
        return meter_values(tid, samples, connector_id=rng.choice(_INTS), minute=rng.randint(0, 59))
    if kind == 1:
        return exchange(
            "StatusNotification",
            {
                "connectorId": abs(rng.choice(_INTS)) if rng.random() < 0.9 else 1,
                "errorCode": "NoError",
                "status": "Available",
                "info": rng.choice(_STRINGS),
                "timestamp": rng.choice(_TIMES),
            },
        )
    if kind == 2:
        return exchange("DataTransfer", {"vendorId": rng.choice(_STRINGS), "data": rng.choice(_STRINGS)})
    if kind == 3:
        return exchange("Authorize", {"idTag": rng.choice(_STRINGS)})
    data = [{"timestamp": rng.choice(_TIMES), "sampledValue": samples}]
    return exchange(
        "StopTransaction",
        {
            "transactionId": tid,
            "meterStop": rng.choice(_INTS),
            "timestamp": rng.choice(_TIMES),
            "idTag": rng.choice(_STRINGS),
            "transactionData": data,
        },
    )


@pytest.mark.postgres
def test_fuzzed_absurd_values_are_all_applied(make_app, postgres_url):
    """Seeded and bounded: over a hundred exchanges of random absurd values, in batches, each applied."""
    app = make_app(DATABASE_URL=postgres_url)
    with app.app_context():
        point = a_charge_point(charge_point_id=CP, connectors=2)
        started = datetime(2026, 9, 1, tzinfo=UTC)
        [transaction_id] = transactions.allocate_transaction_ids(
            [transactions.Start(point.id, 1, "T", started, 0)]
        )
        rng = random.Random(14)
        actors = {"MeterValues": process_meter_values, "StopTransaction": process_transaction_messages}
        applied = 0
        for _ in range(30):
            batch = [_fuzzed(rng, transaction_id) for _ in range(rng.randint(1, 8))]
            by_actor: dict = {}
            for item in batch:
                by_actor.setdefault(actors.get(item["frames"][0]["action"], record_exchanges), []).append(
                    item
                )
            for actor, items in by_actor.items():
                apply(actor, *items)  # raises if one of them could not be applied
                applied += len(items)
            assert db.session.scalar(select(func.count()).select_from(OcppMessage)) == 2 * applied
        assert applied > 100
