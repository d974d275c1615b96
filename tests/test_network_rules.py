"""The rules behind reservations, availability, firmware and diagnostics (csms.services), on SQLite
and PostgreSQL: the state tables, the reservation fee settled once whoever races, which start uses a
reservation, and notifications applied late, twice or out of order."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, update

from csms.extensions import db
from csms.models import Connector, FirmwareTarget, LedgerEntry, QueuedCommand, Reservation, Wallet
from csms.models.firmware import DIAGNOSTICS_TRANSITIONS, FIRMWARE_TRANSITIONS
from csms.models.reservations import TRANSITIONS
from csms.services import diagnostics, firmware, maintenance, reservations
from csms.services.errors import Conflict, InvalidInput
from tests.builders import a_charge_point, a_station, a_tariff, a_user, a_wallet, an_id_tag

NOW = datetime.now(UTC)


def test_the_state_tables_end_in_final_states():
    assert {s: sorted(n) for s, n in TRANSITIONS.items()} == {
        "requested": ["accepted", "cancelled", "expired", "rejected", "used"],
        "accepted": ["cancelled", "expired", "used"],
        "rejected": [],
        "used": [],
        "expired": [],
        "cancelled": [],
    }
    assert [s for s, n in FIRMWARE_TRANSITIONS.items() if not n] == [
        "Installed",
        "InstallationFailed",
        "Failed",
    ]
    assert sorted(FIRMWARE_TRANSITIONS["Downloaded"]) == ["InstallationFailed", "Installed", "Installing"]
    assert [s for s, n in DIAGNOSTICS_TRANSITIONS.items() if not n] == ["Uploaded", "NoFile", "Failed"]


def customer(funds: int = 1000):
    user = a_user()
    a_wallet(user, available_minor=funds)
    an_id_tag(id_tag=f"T-{user.id}", user_id=user.id)
    return user


def ledger(reservation_id: int) -> list[tuple[str, int]]:
    rows = db.session.execute(
        select(LedgerEntry.kind, LedgerEntry.amount_minor)
        .where(LedgerEntry.reservation_id == reservation_id)
        .order_by(LedgerEntry.id)
    )
    return [tuple(row) for row in rows]


def balance(user) -> tuple[int, int]:
    db.session.rollback()
    wallet = db.session.scalar(select(Wallet).where(Wallet.user_id == user.id))
    return wallet.available_minor, wallet.held_minor


def test_a_customer_reservation_holds_the_fee_and_a_short_wallet_is_refused(any_db_app):
    a_tariff(is_default=True, reservation_fee=Decimal("2.5000"))
    point = a_charge_point(connectors=2)
    ada = customer(funds=300)
    reservation = reservations.create(
        point.charge_point_id, 1, f"T-{ada.id}", NOW + timedelta(hours=1), user_id=ada.id
    )
    assert (reservation.state, reservation.fee_minor, balance(ada)) == ("requested", 250, (50, 250))
    with pytest.raises(Conflict) as short:
        reservations.create(point.charge_point_id, 2, f"T-{ada.id}", NOW + timedelta(hours=1), user_id=ada.id)
    assert short.value.code == "insufficient_funds" and balance(ada) == (50, 250)
    with pytest.raises(Conflict) as taken:
        reservations.create(point.charge_point_id, 1, "OTHER", NOW + timedelta(hours=1))
    assert taken.value.code == "connector_reserved"
    for expiry in (NOW - timedelta(seconds=1), NOW + timedelta(days=8)):
        with pytest.raises(InvalidInput):
            reservations.create(point.charge_point_id, 2, "OTHER", expiry)


def test_expiry_settles_once_however_many_nodes_sweep_at_once(any_db_app):
    a_tariff(is_default=True, reservation_fee=Decimal("1.0000"))
    point = a_charge_point()
    ada = customer()
    reservation = reservations.create(
        point.charge_point_id, 1, f"T-{ada.id}", NOW + timedelta(hours=1), user_id=ada.id
    )
    reservations.apply_answer(point.id, reservation.id, "answered", {"status": "Accepted"})
    db.session.execute(
        update(Reservation)
        .where(Reservation.id == reservation.id)
        .values(expires_at=NOW - timedelta(seconds=1))
    )
    db.session.commit()
    app = any_db_app
    barrier = threading.Barrier(4)
    expired: list[list[int]] = []

    def sweep() -> None:
        with app.app_context():
            barrier.wait()
            try:
                expired.append(reservations.expire_due(db.session))
                db.session.commit()
            finally:
                db.session.remove()

    threads = [threading.Thread(target=sweep) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(expired) == [[], [], [], [reservation.id]]
    assert ledger(reservation.id) == [("hold", 100), ("capture", 100)]
    assert balance(ada) == (900, 0)
    # the expired reservation is final: a late answer or start changes nothing, nor money
    assert not reservations.apply_answer(point.id, reservation.id, "answered", {"status": "Accepted"})
    assert reservations.use(point.id, 1, f"T-{ada.id}", reservation.id, 7, "Accepted", NOW) is None
    db.session.commit()
    assert (db.session.get(Reservation, reservation.id).state, balance(ada)) == ("expired", (900, 0))


def test_which_start_uses_a_reservation(any_db_app):
    point = a_charge_point(connectors=2)
    an_id_tag(id_tag="FLEET")
    an_id_tag(id_tag="DRIVER-1", parent_id_tag="FLEET")
    an_id_tag(id_tag="DRIVER-2", parent_id_tag="FLEET")
    an_id_tag(id_tag="STRANGER")
    whole = reservations.create(point.charge_point_id, 0, "DRIVER-1", NOW + timedelta(hours=1))
    assert whole.parent_id_tag == "FLEET"  # the reserved tag's group, by default
    assert reservations.use(point.id, 2, "STRANGER", None, 1, "Accepted", NOW) is None
    assert reservations.use(point.id, 2, "STRANGER", whole.id, 2, "Accepted", NOW) is None
    assert reservations.use(point.id, 2, "DRIVER-2", None, 3, "Blocked", NOW) is None  # refused start
    assert reservations.use(point.id, 2, "DRIVER-2", None, 4, "Accepted", NOW) == whole.id  # its group
    db.session.commit()
    db.session.refresh(whole)
    assert (whole.state, whole.transaction_id, whole.fee_outcome) == (
        "used",
        4,
        None,
    )  # no fee: an operator's
    assert reservations.use(point.id, 1, "DRIVER-1", whole.id, 5, "Accepted", NOW) is None  # used once


def test_a_rejected_or_cancelled_reservation_refunds_and_ends(any_db_app):
    a_tariff(is_default=True, reservation_fee=Decimal("1.0000"))
    point = a_charge_point(connectors=2)
    ada = customer()
    expiry = NOW + timedelta(hours=1)
    occupied = reservations.create(point.charge_point_id, 1, f"T-{ada.id}", expiry, user_id=ada.id)
    assert reservations.apply_answer(point.id, occupied.id, "answered", {"status": "Occupied"})
    assert not reservations.apply_answer(point.id, occupied.id, "answered", {"status": "Accepted"})
    other_charger = a_charge_point()
    kept = reservations.create(point.charge_point_id, 2, f"T-{ada.id}", expiry, user_id=ada.id)
    assert not reservations.apply_answer(other_charger.id, kept.id, "answered", {"status": "Rejected"})
    assert reservations.apply_answer(point.id, kept.id, "timeout", None)
    db.session.commit()
    assert [db.session.get(Reservation, r.id).reason for r in (occupied, kept)] == [
        "the charger answered Occupied",
        "ReserveNow timeout",
    ]
    cancelled = reservations.create(point.charge_point_id, 1, f"T-{ada.id}", expiry, user_id=ada.id)
    reservations.cancel(cancelled, "changed my mind")
    with pytest.raises(Conflict):
        reservations.cancel(cancelled, "twice")
    assert [ledger(r.id) for r in (occupied, kept, cancelled)] == [[("hold", 100), ("refund", 100)]] * 3
    assert balance(ada) == (1000, 0)


def test_firmware_statuses_never_go_back(any_db_app):
    point = a_charge_point()
    job = firmware.create(
        charge_point_ids=[point.charge_point_id],
        station_id=None,
        location="https://fw.example.test/2.0.bin",
        file_id=None,
        retrieve_date=NOW,
        retries=None,
        retry_interval=None,
        ttl_seconds=60,
        requested_by=None,
        base_url="http://csms.test/",
    )
    cp = point.charge_point_id

    def status() -> str:
        db.session.commit()
        return db.session.scalar(select(FirmwareTarget.status).where(FirmwareTarget.update_id == job.id))

    assert firmware.apply_status(cp, "Downloaded", NOW)  # Downloading was lost: a later step still counts
    firmware.apply_answer(job.targets[0].command_id, "answered", NOW)  # the answer, applied late
    assert status() == "Downloaded"
    assert not firmware.apply_status(cp, "Downloading", NOW)
    assert not firmware.apply_status(cp, "Idle", NOW)
    assert firmware.apply_status(cp, "Installing", NOW) and firmware.apply_status(cp, "Installed", NOW)
    assert not firmware.apply_status(cp, "InstallationFailed", NOW)
    assert status() == "Installed"


def test_a_scheduled_availability_applies_whichever_comes_first(any_db_app):
    point = a_charge_point(connectors=2)
    request = {"connectorId": 1, "type": "Inoperative"}
    asked = NOW - timedelta(seconds=10)
    # the StatusNotification that ends the transaction was applied before the Scheduled answer
    db.session.execute(
        update(Connector)
        .where(Connector.charge_point_id == point.id, Connector.connector_id == 1)
        .values(status="Unavailable", status_at=NOW)
    )
    maintenance.record_answer(
        point.id, "ChangeAvailability", request, "answered", {"status": "Scheduled"}, None, asked
    )
    db.session.commit()
    first = db.session.scalar(
        select(Connector).where(Connector.charge_point_id == point.id, Connector.connector_id == 1)
    )
    assert (first.availability, first.availability_state) == ("Inoperative", "applied")
    # the usual order: Scheduled, then the status that shows it
    later = {"connectorId": 2, "type": "Inoperative"}
    maintenance.record_answer(
        point.id, "ChangeAvailability", later, "answered", {"status": "Scheduled"}, None, NOW
    )
    assert maintenance.with_scheduled_changes([point.id]) == {point.id}
    maintenance.apply_status(point.id, 2, "Finishing")
    db.session.commit()
    second = db.session.scalar(
        select(Connector).where(Connector.charge_point_id == point.id, Connector.connector_id == 2)
    )
    assert second.availability_state == "scheduled"
    maintenance.apply_status(point.id, 2, "Unavailable")
    db.session.commit()
    db.session.refresh(second)
    assert second.availability_state == "applied"
    assert maintenance.with_scheduled_changes([point.id]) == set()
    # an older answer delivered late never overwrites a newer one
    maintenance.record_answer(point.id, "ChangeAvailability", later, "timeout", None, None, asked)
    db.session.commit()
    (operation,) = maintenance.operations(point.id)
    assert (operation.outcome, operation.status, operation.request) == ("answered", "Scheduled", later)


def test_a_job_targets_a_station_and_a_diagnostics_target_follows_its_answers(any_db_app):
    station = a_station()
    first, second = a_charge_point(station_id=station.id), a_charge_point(station_id=station.id)
    elsewhere = a_charge_point()
    job = diagnostics.create(
        charge_point_ids=[elsewhere.charge_point_id, first.charge_point_id],
        station_id=station.id,
        start_time=None,
        stop_time=None,
        retries=None,
        retry_interval=None,
        ttl_seconds=60,
        requested_by=None,
        base_url="https://csms.test",
    )
    assert [t.charge_point_id for t in job.targets] == [
        elsewhere.charge_point_id,
        first.charge_point_id,
        second.charge_point_id,
    ]
    locations = {q.payload["location"] for q in db.session.scalars(select(QueuedCommand))}
    assert locations == {f"https://csms.test/files/diagnostics/{t.upload_token}/" for t in job.targets}
    answers = [("answered", {"fileName": "a.log"}), ("answered", {}), ("timeout", None)]
    for target, (outcome, response) in zip(job.targets, answers, strict=True):
        diagnostics.apply_answer(target.command_id, outcome, response, NOW)
    db.session.commit()
    db.session.expire_all()
    assert [(t.status, t.file_name) for t in job.targets] == [
        ("Accepted", "a.log"),
        ("NoFile", None),
        ("Failed", None),
    ]
    assert not diagnostics.apply_status(second.charge_point_id, "Uploading", NOW)  # nothing open there
    assert diagnostics.apply_status(elsewhere.charge_point_id, "UploadFailed", NOW)
    assert diagnostics.apply_status(elsewhere.charge_point_id, "Uploading", NOW)  # the charger retries
    assert diagnostics.apply_status(elsewhere.charge_point_id, "Uploaded", NOW)
    assert not diagnostics.apply_status(elsewhere.charge_point_id, "Uploading", NOW)
