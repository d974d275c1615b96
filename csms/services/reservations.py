"""Reservations (OCPP 1.6 §5.13 ReserveNow, §5.1 CancelReservation): a connector, or the whole
charger (connector 0), kept for an idTag or its group until an expiry.

Life of a reservation (csms.models.reservations.TRANSITIONS): stored `requested`, ReserveNow sent with
`reservationId` = its id; the charger's answer (recorded by the `commands` actor) makes it
`accepted`, or `rejected` (Occupied, Faulted, Unavailable, Rejected, or no answer at all). A
StartTransaction that names it, or that comes from its tag or a tag of its group on its connector,
makes it `used`; past its expiry it is `expired`; withdrawn, `cancelled`. Every change of state is one
conditional UPDATE from the states it may leave, so two workers, two web nodes and the expiry sweep
racing on one reservation cannot both win.

The fee (a customer's reservation only): the tariff's `reservationFee` is held from the wallet when
the reservation is made, and settled once when it ends:
- used: captured (the connector was kept for the customer; the charging is billed on its own);
- expired unused: captured (a no-show);
- cancelled by the customer or an operator before it was used: refunded in full;
- rejected by the charger, or never delivered: refunded in full.
The ledger entries carry the reservation's id and are unique per (reservation, kind), so a settlement
asked twice moves money once.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from csms.extensions import db
from csms.models import ChargePoint, Connector, IdTag, LedgerEntry, LedgerKind, Tariff, Wallet
from csms.models.reservations import OPEN_STATES, TRANSITIONS, Reservation, ReservationState
from csms.services import wallet as wallet_service
from csms.services.billing import to_minor
from csms.services.errors import Conflict, InvalidInput, NotFound
from csms.services.sql import found_among, insert_ignoring_conflicts

MAX_DURATION = timedelta(days=7)
INT32_MAX = 2**31 - 1

# What becomes of the held fee when a reservation ends in each state.
FEE_RULE: dict[ReservationState, str] = {
    ReservationState.USED: "captured",
    ReservationState.EXPIRED: "captured",
    ReservationState.CANCELLED: "refunded",
    ReservationState.REJECTED: "refunded",
}


def _now() -> datetime:
    return datetime.now(UTC)


def _move(
    session: Session,
    reservation_id: int,
    leaving: Iterable[ReservationState],
    entering: ReservationState,
    *criteria: Any,
    **values: Any,
) -> bool:
    """Move one reservation into `entering` from any of `leaving` (each an allowed transition), and
    settle its fee if that ends it; True when this call moved it."""
    leaving = tuple(leaving)
    for state in leaving:
        if entering not in TRANSITIONS[state]:
            raise ValueError(f"a reservation cannot go from {state} to {entering}")
    if entering in FEE_RULE:
        values.setdefault("ended_at", _now())
    moved = session.execute(
        update(Reservation)
        .where(Reservation.id == reservation_id, Reservation.state.in_([s.value for s in leaving]), *criteria)
        .values(state=entering.value, **values)
        .execution_options(synchronize_session=False)
    ).rowcount
    if moved and entering in FEE_RULE:
        _settle_fee(session, reservation_id, FEE_RULE[entering])
    return bool(moved)


# --- making one ---------------------------------------------------------------------------------


def create(
    charge_point_id: str,
    connector_id: int,
    id_tag: str,
    expires_at: datetime,
    *,
    user_id: int | None = None,
    requested_by: int | None = None,
    parent_id_tag: str | None = None,
) -> Reservation:
    """Store a reservation (`requested`) and, for a customer (`user_id`), hold the tariff's
    reservation fee from their wallet; commits. The caller sends ReserveNow (`reserve_now_payload`).

    Refused: unknown charger or connector (404), an expiry in the past or more than `MAX_DURATION`
    ahead (422), a connector (or charger, for connector 0) already reserved (409
    `connector_reserved`), a wallet short of the fee (409 `insufficient_funds`)."""
    now = _now()
    if expires_at <= now:
        raise InvalidInput("expiryDate must be in the future", code="invalid_expiry")
    if expires_at > now + MAX_DURATION:
        raise InvalidInput(f"expiryDate at most {MAX_DURATION.days} days ahead", code="invalid_expiry")
    point = db.session.scalar(select(ChargePoint).where(ChargePoint.charge_point_id == charge_point_id))
    if point is None:
        raise NotFound(f"unknown charge point {charge_point_id!r}", code="charge_point_not_found")
    known = db.session.scalar(
        select(Connector.id).where(
            Connector.charge_point_id == point.id, Connector.connector_id == connector_id
        )
    )
    if known is None:
        raise NotFound(
            f"charge point {charge_point_id!r} has no connector {connector_id}", code="connector_not_found"
        )
    expire_due(db.session, point.id)
    if parent_id_tag is None:
        parent_id_tag = db.session.scalar(select(IdTag.parent_id_tag).where(IdTag.id_tag == id_tag))
    reservation = Reservation(
        charge_point_id=point.id,
        connector_id=connector_id,
        id_tag=id_tag,
        parent_id_tag=parent_id_tag,
        user_id=user_id,
        requested_by=requested_by,
        expires_at=expires_at,
        fee_minor=0,
    )
    wallet = None
    if user_id is not None:
        wallet = db.session.scalar(select(Wallet).where(Wallet.user_id == user_id))
        if wallet is None:
            raise Conflict("this account has no wallet", code="no_wallet")
        reservation.fee_minor = to_minor(_fee(point))
        reservation.currency = wallet.currency
    db.session.add(reservation)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise Conflict(
            f"connector {connector_id} of {charge_point_id!r} already has an open reservation",
            code="connector_reserved",
        ) from None
    if reservation.id > INT32_MAX:  # OCPP's reservationId is an int32
        db.session.rollback()
        raise Conflict("reservation ids are exhausted", code="reservation_ids_exhausted")
    if wallet is not None and reservation.fee_minor:
        if not wallet_service.hold(wallet, reservation.fee_minor):
            db.session.rollback()
            raise Conflict("insufficient funds for the reservation fee", code="insufficient_funds")
        db.session.add(
            LedgerEntry(
                wallet_id=wallet.id,
                kind=LedgerKind.HOLD,
                amount_minor=reservation.fee_minor,
                currency=wallet.currency,
                reservation_id=reservation.id,
                description=f"Reservation {reservation.id} at {charge_point_id}/{connector_id}",
            )
        )
    db.session.commit()
    return reservation


def _fee(point: ChargePoint):
    tariff = (
        db.session.get(Tariff, point.tariff_id)
        if point.tariff_id is not None
        else db.session.scalar(select(Tariff).where(Tariff.is_default.is_(True)))
    )
    return tariff.reservation_fee if tariff is not None else 0


def reserve_now_payload(reservation: Reservation) -> dict[str, Any]:
    payload = {
        "connectorId": reservation.connector_id,
        "expiryDate": reservation.expires_at.isoformat().replace("+00:00", "Z"),
        "idTag": reservation.id_tag,
        "reservationId": reservation.id,
    }
    if reservation.parent_id_tag:
        payload["parentIdTag"] = reservation.parent_id_tag
    return payload


# --- the charger's answers (the `commands` actor) ------------------------------------------------


def apply_answer(
    charge_point_pk: int, reservation_id: Any, outcome: str, response: dict[str, Any] | None
) -> bool:
    """Record the answer to ReserveNow for one of this charger's reservations: Accepted →
    `accepted`; Occupied, Faulted, Unavailable, Rejected, or no answer (timeout, CALLERROR, invalid)
    → `rejected`, its fee refunded. The caller commits."""
    if not isinstance(reservation_id, int) or not 0 < reservation_id <= INT32_MAX:
        return False
    status = (response or {}).get("status") if outcome == "answered" else None
    ours = Reservation.charge_point_id == charge_point_pk
    requested = [ReservationState.REQUESTED]
    if status == "Accepted":
        return _move(
            db.session, reservation_id, requested, ReservationState.ACCEPTED, ours, charger_status=status
        )
    reason = f"the charger answered {status}" if status else f"ReserveNow {outcome}"
    return _move(
        db.session,
        reservation_id,
        requested,
        ReservationState.REJECTED,
        ours,
        charger_status=status,
        reason=reason[:255],
    )


def reject(reservation_id: int, reason: str) -> None:
    """ReserveNow never reached the charger (offline, invalid): `rejected`, fee refunded; commits."""
    _move(
        db.session,
        reservation_id,
        [ReservationState.REQUESTED],
        ReservationState.REJECTED,
        reason=reason[:255],
    )
    db.session.commit()


# --- cancelling -----------------------------------------------------------------------------------


def cancel(reservation: Reservation, reason: str) -> bool:
    """Withdraw an open reservation (commits): the CSMS stops honouring it at once and refunds its
    fee; the caller then sends CancelReservation (queued for an offline charger). A reservation
    already ended: 409 `reservation_not_open`."""
    expire_due(db.session, reservation.charge_point_id)
    moved = _move(db.session, reservation.id, OPEN_STATES, ReservationState.CANCELLED, reason=reason[:255])
    db.session.commit()
    db.session.refresh(reservation)
    if not moved:
        raise Conflict(
            f"reservation {reservation.id} is {reservation.state}: only an open one can be cancelled",
            code="reservation_not_open",
            details={"state": reservation.state},
        )
    return moved


# --- using (the `transactions` actor) -------------------------------------------------------------


def chargers_with_open(charge_point_pks: Iterable[int]) -> set[int]:
    """Which of these chargers hold an open reservation: a batch of starts asks once, and `use`
    runs only for those (most starts are at chargers nobody reserved)."""
    open_states = [state.value for state in OPEN_STATES]
    return found_among(
        db.session, Reservation.charge_point_id, charge_point_pks, Reservation.state.in_(open_states)
    )


def use(
    charge_point_pk: int,
    connector_id: int,
    id_tag: str,
    reservation_id: int | None,
    transaction_id: int,
    id_tag_status: str,
    started_at: datetime,
) -> int | None:
    """A StartTransaction the CSMS accepted uses the reservation it names (§5.13: its idTag or its
    parent's must match), or else the open reservation on its connector (or the charger's, connector
    0) held for its tag or the tag's group. Another tag uses nothing. Returns the reservation used.
    The caller commits."""
    if id_tag_status != "Accepted":
        return None
    tag_parent = db.session.scalar(select(IdTag.parent_id_tag).where(IdTag.id_tag == id_tag))
    matches_tag = or_(
        Reservation.id_tag == id_tag,
        and_(Reservation.parent_id_tag.is_not(None), Reservation.parent_id_tag == tag_parent),
    )
    query = select(Reservation.id).where(
        Reservation.charge_point_id == charge_point_pk,
        Reservation.state.in_([s.value for s in OPEN_STATES]),
        Reservation.expires_at > started_at,
        matches_tag,
    )
    if reservation_id is not None:
        query = query.where(Reservation.id == reservation_id)
    else:
        query = query.where(Reservation.connector_id.in_([connector_id, 0])).order_by(
            Reservation.connector_id.desc()
        )
    found = db.session.scalar(query.limit(1))
    if found is None:
        return None
    moved = _move(db.session, found, OPEN_STATES, ReservationState.USED, transaction_id=transaction_id)
    return found if moved else None


# --- expiry -----------------------------------------------------------------------------------------


def expire_due(session: Session, charge_point_pk: int | None = None) -> list[int]:
    """Mark every open reservation past its expiry `expired` (and capture its fee); returns their ids.
    Safe on every node at once: each is one conditional UPDATE, and only the caller whose UPDATE
    matched settles it. The caller commits."""
    now = _now()
    query = select(Reservation.id).where(
        Reservation.state.in_([s.value for s in OPEN_STATES]), Reservation.expires_at <= now
    )
    if charge_point_pk is not None:
        query = query.where(Reservation.charge_point_id == charge_point_pk)
    expired = []
    for reservation_id in session.scalars(query.order_by(Reservation.id).limit(500)).all():
        if _move(
            session, reservation_id, OPEN_STATES, ReservationState.EXPIRED, Reservation.expires_at <= now
        ):
            expired.append(reservation_id)
    return expired


# --- the fee ----------------------------------------------------------------------------------------


def _settle_fee(session: Session, reservation_id: int, outcome: str) -> None:
    """Capture or refund the held fee once: the ledger's unique (reservation, kind) decides."""
    row = session.execute(
        select(Reservation.fee_minor, Reservation.currency, Reservation.user_id).where(
            Reservation.id == reservation_id
        )
    ).one()
    if not row.fee_minor or row.user_id is None:
        return
    wallet_id = session.scalar(select(Wallet.id).where(Wallet.user_id == row.user_id))
    if wallet_id is None:
        return
    kind = LedgerKind.CAPTURE if outcome == "captured" else LedgerKind.REFUND
    entry = {
        "wallet_id": wallet_id,
        "kind": kind.value,
        "amount_minor": row.fee_minor,
        "currency": row.currency,
        "reservation_id": reservation_id,
        "description": f"Reservation {reservation_id} fee {outcome}",
        "created_at": _now(),
    }
    if insert_ignoring_conflicts(session, LedgerEntry, [entry], ["reservation_id", "kind"]) != 1:
        return
    back = row.fee_minor if kind == LedgerKind.REFUND else 0
    session.execute(
        update(Wallet)
        .where(Wallet.id == wallet_id)
        .values(held_minor=Wallet.held_minor - row.fee_minor, available_minor=Wallet.available_minor + back)
    )
    session.execute(update(Reservation).where(Reservation.id == reservation_id).values(fee_outcome=outcome))


# --- reading ----------------------------------------------------------------------------------------


def get(reservation_id: int, *, user_id: int | None = None) -> Reservation:
    """One reservation (a customer's own only, with `user_id`); an open one past its expiry is
    expired first, so nobody reads a stale `accepted`."""
    reservation = db.session.get(Reservation, reservation_id) if 0 < reservation_id <= INT32_MAX else None
    if reservation is None or (user_id is not None and reservation.user_id != user_id):
        raise NotFound(f"no reservation {reservation_id}", code="reservation_not_found")
    if reservation.state in OPEN_STATES and reservation.expires_at <= _now():
        expire_due(db.session, reservation.charge_point_id)
        db.session.commit()
        db.session.refresh(reservation)
    return reservation


def open_by_connector(charge_point_pk: int) -> dict[int, Reservation]:
    """The charger's open reservations, by connector (0: the charger as a whole)."""
    rows = db.session.scalars(
        select(Reservation).where(
            Reservation.charge_point_id == charge_point_pk,
            Reservation.state.in_([s.value for s in OPEN_STATES]),
            Reservation.expires_at > _now(),
        )
    )
    return {r.connector_id: r for r in rows}
