"""Load management: a site (station) with a grid connection limit shares it among its running
transactions, and tells each charger its share with a TxProfile (OCPP 1.6 §3.13).

Safety first: the sum of what the CSMS has allowed never exceeds the limit, at any instant.

- A charger is sent a TxDefaultProfile of 0 when it boots: a car that plugs in waits until the CSMS
  has given it a share, rather than drawing what nobody allowed. A charger that refuses it (or any
  TxProfile) is counted at its maximum from then on.
- A change is sent in two rounds: first every share that goes down, and only once those chargers have
  answered (a lowered share counts from its acceptance), the shares that go up, within what the sum
  then leaves (a raised share counts from the moment it is sent).
- A charger that does not answer is counted at what it was last allowed (the higher of old and new);
  an offline one keeps its last allowed value (it applies its last profile).

Every step is a `LoadChange` row: the limit, each connector's allowed value, their sum. One
reallocation per site at a time (`site_lock`: a PostgreSQL advisory lock across workers, and a lock
of this process, which is all the embedded mode has). A reallocation that finds one already decided
after its trigger does nothing: that one read everything the trigger changed.

Amounts are integers in the site's step (csms.services.site_load): tenths of an ampere (per
phase) for a current limit, watts for a power limit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, bindparam, delete, exists, func, insert, select, text, tuple_, update

from csms.cluster import presence
from csms.extensions import db
from csms.models import (
    ChargePoint,
    ChargingProfile,
    IdTag,
    LoadAllocation,
    LoadChange,
    Station,
    Transaction,
    TransactionState,
    User,
)
from csms.models.smart_charging import REJECTS, STEERED, UNANSWERED, WAITING
from csms.services import charging_schedules, load_allocation
from csms.services.load_allocation import Demand
from csms.services.site_load import Site

log = logging.getLogger(__name__)

# The load manager's own profiles: one id per purpose and connector, so each replaces the last
# (§5.16.1: a profile with the same chargingProfileId replaces the installed one).
TX_DEFAULT_PROFILE_ID = 900_000
TX_PROFILE_ID = 900_001  # + connector id
LOAD_STACK_LEVEL = 1


# --- talking to chargers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    charge_point_id: str
    action: str
    payload: dict[str, Any]


# Sends calls to chargers at once and returns, in order, each charger's answer or the exception of
# its failure (offline, timeout, CALLERROR). The actor passes the gateway's (embedded mode) or the
# cluster bus's (worker processes): csms.cluster.charger_calls.
Calls = Callable[[list[Call], float], list[Any]]


def tx_profile(site: Site, transaction_id: int, connector_id: int, steps: int) -> dict[str, Any]:
    """SetChargingProfile.req giving one transaction `steps` (§7.8)."""
    return {
        "connectorId": connector_id,
        "csChargingProfiles": {
            "chargingProfileId": TX_PROFILE_ID + connector_id,
            "transactionId": transaction_id,
            "stackLevel": LOAD_STACK_LEVEL,
            "chargingProfilePurpose": charging_schedules.TX,
            "chargingProfileKind": "Relative",
            "chargingSchedule": {
                "chargingRateUnit": site.unit,
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": site.shown(steps)}],
            },
        },
    }


def tx_default_profile(unit: str) -> dict[str, Any]:
    """SetChargingProfile.req for connector 0: no car draws anything before the CSMS gives it a share."""
    return {
        "connectorId": 0,
        "csChargingProfiles": {
            "chargingProfileId": TX_DEFAULT_PROFILE_ID,
            "stackLevel": LOAD_STACK_LEVEL,
            "chargingProfilePurpose": charging_schedules.TX_DEFAULT,
            "chargingProfileKind": "Relative",
            "chargingSchedule": {
                "chargingRateUnit": unit,
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 0}],
            },
        },
    }


def _answer_status(answer: Any) -> str | None:
    """Accepted / Rejected / NotSupported, or None when the charger did not answer."""
    if isinstance(answer, dict):
        return answer.get("status")
    return None


def _remember_profiles(sent: list[tuple[int, dict[str, Any], Any]]) -> None:
    """Store the load manager's profiles (charger key, SetChargingProfile.req, the charger's answer
    or the failure), each in place of the last one it sent that charger with the same
    chargingProfileId (the charger replaced it too): one DELETE and one INSERT for them all."""
    if not sent:
        return
    now = datetime.now(UTC)
    replaced = {(pk, payload["csChargingProfiles"]["chargingProfileId"]) for pk, payload, _ in sent}
    profiles = ChargingProfile.__table__.c
    db.session.execute(
        delete(ChargingProfile.__table__).where(
            profiles.source == "load",
            tuple_(profiles.charge_point_id, profiles.profile_id).in_(sorted(replaced)),
        )
    )
    rows = []
    for pk, payload, answer in sent:
        profile = payload["csChargingProfiles"]
        rows.append(
            {
                "charge_point_id": pk,
                "connector_id": payload["connectorId"],
                "profile_id": profile["chargingProfileId"],
                "purpose": profile["chargingProfilePurpose"],
                "stack_level": profile["stackLevel"],
                "transaction_id": profile.get("transactionId"),
                "profile": profile,
                "source": "load",
                "status": _answer_status(answer) or "failed",
                "response": answer if isinstance(answer, dict) else None,
                "error": None if isinstance(answer, dict) else str(answer)[:255],
                "answered_at": now,
            }
        )
    db.session.execute(insert(ChargingProfile.__table__), rows)


# --- one reallocation at a time per site ----------------------------------------------------------

_local_locks: dict[int, threading.Lock] = {}
_local_locks_guard = threading.Lock()
_ADVISORY_CLASS = 0x5C  # the advisory lock's first key: load management's own


@contextlib.contextmanager
def site_lock(station_id: int) -> Iterator[bool]:
    """Try to hold the site: in this process, and on PostgreSQL for every worker (a session-level
    advisory lock on a connection of its own, in autocommit: no transaction stays open while
    chargers answer, and the lock costs two statements, without a BEGIN and COMMIT around each).
    Yields False when another reallocation holds it: the caller tries again later rather than
    keep a worker thread waiting (every thread could end up waiting on one busy site)."""
    with _local_locks_guard:
        local = _local_locks.setdefault(station_id, threading.Lock())
    if not local.acquire(blocking=False):
        yield False
        return
    try:
        if db.engine.dialect.name != "postgresql":
            yield True
            return
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            key = {"c": _ADVISORY_CLASS, "o": station_id}
            held = connection.execute(text("SELECT pg_try_advisory_lock(:c, :o)"), key).scalar()
            try:
                yield bool(held)
            finally:
                if held:
                    connection.execute(text("SELECT pg_advisory_unlock(:c, :o)"), key)
    finally:
        local.release()


# --- reallocation ----------------------------------------------------------------------------------


@dataclass
class _Running:
    transaction_id: int
    charge_point_pk: int
    charge_point_id: str
    connector_id: int
    maximum: int
    priority: int


def reallocate(
    station_id: int,
    reason: str,
    calls: Calls,
    timeout: float,
    *,
    triggered_at: datetime | None = None,
    booted: tuple[int, ...] = (),
) -> Reallocation:
    """Share the site's limit anew and tell the chargers. `booted` chargers (their keys) are sent
    their TxDefaultProfile first."""
    with site_lock(station_id) as held:
        if not held:
            return Reallocation("busy")
        started = time.monotonic()
        try:
            result = _reallocate(station_id, reason, calls, timeout, triggered_at, booted)
        finally:
            db.session.rollback()
        level = logging.DEBUG if result.outcome == "unlimited" else logging.INFO
        took = time.monotonic() - started
        log.log(level, "site %s (%s): %s in %.3f s", station_id, reason, result.outcome, took)
        return result


@dataclass(frozen=True)
class Reallocation:
    """What a reallocation did: `outcome` "busy" (another reallocation of the site is under way, try
    again), "covered" (one decided after the trigger already saw the change), "unlimited" or
    "done"; `defaults_failed`, the chargers whose TxDefaultProfile did not get through (offline as
    far as the cluster knows, which a charger that just connected may be for a moment while its
    node writes its presence, or no answer): to be tried again."""

    outcome: str
    defaults_failed: tuple[int, ...] = ()


def _reallocate(
    station_id: int,
    reason: str,
    calls: Calls,
    timeout: float,
    triggered_at: datetime | None,
    booted: tuple[int, ...],
) -> Reallocation:
    station = db.session.get(Station, station_id)
    site = Site.of(station) if station is not None else None
    if site is None:
        if station is not None:
            _release(station_id, calls, timeout)
        return Reallocation("unlimited")
    chargers = _SiteChargers.read(station_id)
    owed = chargers.owed_defaults(booted, triggered_at)
    failed: tuple[int, ...] = ()
    if owed:
        failed = _send_tx_defaults(site, chargers, sorted(owed), calls, timeout)
    if triggered_at is not None and _decided_since(station_id, triggered_at):
        return Reallocation("covered", failed)
    rows = _rows(station_id)
    _record(site, "decided", reason, rows)  # written before the reads below: they see every change before it
    running = _running(site)
    _sync_rows(site, rows, running, chargers)
    db.session.commit()
    online = {chargers.keys[pk] for pk in chargers.online}
    run = _Run(site, reason, rows, running, online, calls, timeout)
    run.steady = chargers.accepted({each.charge_point_pk for each in running.values()})
    for _pass in range(3):  # a charger that refuses profiles is counted at its maximum: again
        refused = run.lower(resend=_pass == 0)
        refused |= run.raise_()
        if not refused:
            break
    return Reallocation("done", failed)


@dataclass
class _SiteChargers:
    """The site's chargers, read once per reallocation: their OCPP ids by key, which of them are
    connected, and what became of each one's TxDefaultProfile (Accepted, Rejected, NotSupported,
    failed; absent when never sent) and when."""

    keys: dict[int, str]
    online: set[int]
    defaults: dict[int, str]
    defaults_at: dict[int, datetime]

    @classmethod
    def read(cls, station_id: int) -> _SiteChargers:
        rows = db.session.execute(
            select(
                ChargePoint.id,
                ChargePoint.charge_point_id,
                ChargingProfile.status,
                ChargingProfile.answered_at,
                presence.connected_filter(ChargePoint.charge_point_id, True).label("online"),
            )
            .outerjoin(
                ChargingProfile,
                and_(
                    ChargingProfile.charge_point_id == ChargePoint.id,
                    ChargingProfile.source == "load",
                    ChargingProfile.profile_id == TX_DEFAULT_PROFILE_ID,
                ),
            )
            .where(ChargePoint.station_id == station_id)
        ).all()
        keys = {row.id: row.charge_point_id for row in rows}
        online = {row.id for row in rows if row.online}
        sent = [row for row in rows if row.status is not None]
        return cls(
            keys, online, {row.id: row.status for row in sent}, {row.id: row.answered_at for row in sent}
        )

    def owed_defaults(self, booted: tuple[int, ...], since: datetime | None) -> set[int]:
        """The chargers to send their TxDefaultProfile now: the `booted` ones (booted, or joined the
        site) unless it reached them after the trigger (`since`: a reallocation in between sent it;
        again would be a call for nothing, and a failed one would count their next car at its
        maximum), and connected ones it never reached (no answer, or never sent): each
        reallocation tries again, so one lost call at boot does not last until the next boot."""
        answered = ("Accepted", "Rejected", "NotSupported")
        reached = {pk for pk in self.online if self.defaults.get(pk) in answered}
        fresh = {pk for pk in reached if since is not None and self.defaults_at[pk] >= since}
        return {pk for pk in booted if pk in self.keys and pk not in fresh} | (self.online - reached)

    def accepted(self, pks: set[int]) -> set[int]:
        return {pk for pk in pks if self.defaults.get(pk) == "Accepted"}


@dataclass
class _Run:
    """One reallocation of a site: its running transactions, their allocations, and how to reach
    their chargers."""

    site: Site
    reason: str
    rows: dict[tuple, _Allocation]
    running: dict[tuple, _Running]
    online: set[str]
    calls: Calls
    timeout: float
    steady: set[int] = field(default_factory=set)  # chargers that accepted their TxDefaultProfile

    def lower(self, resend: bool) -> bool:
        """The first round: every share that goes down, counted lower once accepted (committed
        with the raises that follow: `raise_`). With `resend`, a share its charger never took (it
        did not answer, or refused though it takes profiles) is sent again as it is counted: the
        charger may still hold its TxDefaultProfile of 0. True when a charger that refuses
        profiles was found (it now counts at its maximum)."""
        wanted = _wanted(self.site, self.rows, self.running, self.online)
        steerable = online_keys(self.running, self.online)
        lowering = load_allocation.lowering(_counted(self.rows), wanted)
        lowers = {key: steps for key, steps in lowering.items() if key in steerable}
        if resend:
            unanswered = {key for key in steerable - lowers.keys() if self.rows[key].state == UNANSWERED}
            lowers |= {key: self.rows[key].allowed for key in unanswered}
        if not lowers:
            return False
        answers = _send(self.site, lowers, self.rows, self.running, self.calls, self.timeout)
        refused = False
        for key, answer in answers.items():
            if _answer_status(answer) == "Accepted":
                self.rows[key].allowed, self.rows[key].state = lowers[key], STEERED
            else:
                refused |= self._not_taken(key, answer)
        _save(self.rows, lowers)
        _record(self.site, "lowered", self.reason, self.rows)
        return refused

    def raise_(self) -> bool:
        """The second round: raises within the headroom the first left, counted from the moment
        they are sent. True when a charger that refuses profiles was found (the others must come
        down)."""
        wanted = _wanted(self.site, self.rows, self.running, self.online)
        order = sorted(
            online_keys(self.running, self.online),
            key=lambda key: (-self.running[key].priority, self.running[key].transaction_id),
        )
        order = [key for key in order if self.rows[key].state != REJECTS]
        raises = load_allocation.raising(self.site.limit, _counted(self.rows), wanted, order)
        if not raises:
            db.session.commit()  # the lowers
            return False
        for key, steps in raises.items():
            self.rows[key].allowed = steps
        _save(self.rows, raises)
        _record(self.site, "raising", self.reason, self.rows)
        db.session.commit()  # with the lowers; raises count from the moment they are sent: recorded before
        answers = _send(self.site, raises, self.rows, self.running, self.calls, self.timeout)
        refused = False
        for key, answer in answers.items():
            if _answer_status(answer) == "Accepted":
                self.rows[key].state = STEERED
            else:
                refused |= self._not_taken(key, answer)
        _save(self.rows, raises)
        _record(self.site, "raised", self.reason, self.rows)
        db.session.commit()
        return refused

    def _not_taken(self, key: tuple, answer: Any) -> bool:
        """A profile not taken. A charger that never took one (its TxDefaultProfile refused too)
        refuses profiles: counted at its maximum from now on (True). One that took its
        TxDefaultProfile but refuses this one (its transaction just ended, say), or did not
        answer, keeps its last profile: counted at the higher of what it was allowed and what it
        was sent (`allowed` already holds that)."""
        row = self.rows[key]
        if _answer_status(answer) is not None and self.running[key].charge_point_pk not in self.steady:
            row.allowed, row.state = self.running[key].maximum, REJECTS
            return True
        row.state = UNANSWERED
        return False


def online_keys(running: dict[tuple, _Running], online: set[str]) -> set[tuple]:
    return {key for key, each in running.items() if each.charge_point_id in online}


def _counted(rows: dict[tuple, _Allocation]) -> dict[tuple, int]:
    return {key: row.allowed for key, row in rows.items()}


def _wanted(
    site: Site, rows: dict[tuple, _Allocation], running: dict[tuple, _Running], online: set[str]
) -> dict[tuple, int]:
    demands = []
    for key, each in running.items():
        row = rows[key]
        fixed = None
        if row.state == REJECTS:
            fixed = each.maximum
        elif each.charge_point_id not in online:
            fixed = row.allowed  # it goes on with its last profile
        demands.append(
            Demand(key, each.maximum, each.priority, each.transaction_id, fixed=fixed, wants=row.wants)
        )
    return load_allocation.allocate(site.limit, demands, site.minimum, site.strategy)


def _running(site: Site) -> dict[tuple, _Running]:
    """The site's running transactions by (charger key, connector), with their charger's maximum and
    their tag owner's priority."""
    rows = db.session.execute(
        select(
            Transaction.id,
            Transaction.charge_point_id,
            Transaction.connector_id,
            ChargePoint.charge_point_id.label("ocpp_id"),
            ChargePoint.max_current_a,
            func.coalesce(User.charging_priority, 0).label("priority"),
        )
        .join(ChargePoint, ChargePoint.id == Transaction.charge_point_id)
        .outerjoin(IdTag, IdTag.id_tag == Transaction.id_tag)
        .outerjoin(User, User.id == IdTag.user_id)
        .where(ChargePoint.station_id == site.station_id, Transaction.state == TransactionState.STARTED)
        .order_by(Transaction.id)
    )
    running: dict[tuple, _Running] = {}
    for row in rows:  # a connector's newest open transaction is the one that runs
        running[(row.charge_point_id, row.connector_id)] = _Running(
            row.id,
            row.charge_point_id,
            row.ocpp_id,
            row.connector_id,
            site.charger_maximum(row.max_current_a),
            row.priority,
        )
    return running


# The allocations are read and written with Core statements: the ORM's unit of work (an object per
# row, its flush at every commit) was most of a reallocation's CPU, at one reallocation per start or
# stop of every limited site.
_ALLOCATIONS = LoadAllocation.__table__
_SAVE_ALLOCATION = update(_ALLOCATIONS).where(
    _ALLOCATIONS.c.charge_point_id == bindparam("key_charge_point"),
    _ALLOCATIONS.c.connector_id == bindparam("key_connector"),
)


@dataclass
class _Allocation:
    """A running transaction's row of `load_allocations`, as the reallocation holds it."""

    charge_point_id: int
    connector_id: int
    transaction_id: int
    allowed: int
    state: str
    wants: int | None
    changed_at: datetime  # its last profile sent (`_send`)


def _rows(station_id: int) -> dict[tuple, _Allocation]:
    columns = _ALLOCATIONS.c
    rows = db.session.execute(
        select(
            columns.charge_point_id,
            columns.connector_id,
            columns.transaction_id,
            columns.allowed,
            columns.state,
            columns.wants,
            columns.changed_at,
        ).where(columns.station_id == station_id)
    )
    return {(row.charge_point_id, row.connector_id): _Allocation(*row) for row in rows}


def _sync_rows(
    site: Site, rows: dict[tuple, _Allocation], running: dict[tuple, _Running], chargers: _SiteChargers
) -> None:
    """One allocation per running transaction: a stopped one's goes (its car draws nothing now); a
    new one starts at 0 when its charger accepted the TxDefaultProfile, else at its maximum."""
    gone = [
        key
        for key, row in rows.items()
        if key not in running or running[key].transaction_id != row.transaction_id
    ]
    if gone:  # before a new transaction's row takes the connector (one row each)
        columns = _ALLOCATIONS.c
        db.session.execute(
            delete(_ALLOCATIONS).where(tuple_(columns.charge_point_id, columns.connector_id).in_(gone))
        )
        for key in gone:
            del rows[key]
    defaults = chargers.accepted({each.charge_point_pk for key, each in running.items() if key not in rows})
    new = []
    now = datetime.now(UTC)
    for key, each in running.items():
        if key in rows:
            continue
        start = 0 if each.charge_point_pk in defaults else each.maximum
        rows[key] = _Allocation(
            each.charge_point_pk, each.connector_id, each.transaction_id, start, WAITING, None, now
        )
        new.append({"station_id": site.station_id, **dataclasses.asdict(rows[key])})
    if new:
        db.session.execute(insert(_ALLOCATIONS), new)


def _save(rows: dict[tuple, _Allocation], keys) -> None:
    """Write back what the reallocation changed of these allocations."""
    if keys:
        db.session.execute(
            _SAVE_ALLOCATION,
            [
                {
                    "key_charge_point": key[0],
                    "key_connector": key[1],
                    "allowed": rows[key].allowed,
                    "state": rows[key].state,
                    "changed_at": rows[key].changed_at,
                }
                for key in keys
            ],
        )


def _send(
    site: Site,
    targets: dict[tuple, int],
    rows: dict[tuple, _Allocation],
    running: dict[tuple, _Running],
    calls: Calls,
    timeout: float,
) -> dict[tuple, Any]:
    """Send each target its TxProfile at once; their answers (or failures) by key, stored. The
    caller holds no transaction (nor SQLite's write lock) while chargers answer."""
    keys = list(targets)
    batch = [
        Call(
            running[key].charge_point_id,
            "SetChargingProfile",
            tx_profile(site, running[key].transaction_id, running[key].connector_id, targets[key]),
        )
        for key in keys
    ]
    sent_at = datetime.now(UTC)
    answers = calls(batch, timeout)
    for key in keys:
        rows[key].changed_at = sent_at
    _remember_profiles(
        [
            (running[key].charge_point_pk, call.payload, answer)
            for key, call, answer in zip(keys, batch, answers, strict=True)
        ]
    )
    _log_not_through(site, batch, answers)
    return dict(zip(keys, answers, strict=True))


def _log_not_through(site: Site, batch: list[Call], answers: list[Any]) -> None:
    """A warning for each profile that did not get through (no answer, the charger out of reach)."""
    for call, answer in zip(batch, answers, strict=True):
        if _answer_status(answer) is None:
            purpose = call.payload["csChargingProfiles"]["chargingProfilePurpose"]
            log.warning(
                "site %s: %s did not take its %s: %s", site.station_id, call.charge_point_id, purpose, answer
            )


def _send_tx_defaults(
    site: Site, chargers: _SiteChargers, pks: list[int], calls: Calls, timeout: float
) -> tuple[int, ...]:
    """Send these chargers their TxDefaultProfile; returns those it did not reach."""
    db.session.commit()  # no transaction open while chargers answer
    payload = tx_default_profile(site.unit)
    batch = [Call(chargers.keys[pk], "SetChargingProfile", payload) for pk in pks]
    answers = calls(batch, timeout)
    _remember_profiles([(pk, payload, answer) for pk, answer in zip(pks, answers, strict=True)])
    db.session.commit()
    _log_not_through(site, batch, answers)
    for pk, answer in zip(pks, answers, strict=True):
        chargers.defaults[pk] = _answer_status(answer) or "failed"
    return tuple(pk for pk in pks if chargers.defaults[pk] == "failed")


def _release(station_id: int, calls: Calls, timeout: float) -> None:
    """The site has no limit any more: its allocations go, and so do the load manager's profiles
    on its chargers (ClearChargingProfile by id), or its TxDefaultProfile of 0 would hold every new
    car at 0. A charger out of reach keeps its profile until the site is reallocated again."""
    db.session.execute(delete(LoadAllocation).where(LoadAllocation.station_id == station_id))
    installed = db.session.execute(
        select(ChargingProfile.id, ChargingProfile.profile_id, ChargePoint.charge_point_id)
        .join(ChargePoint, ChargePoint.id == ChargingProfile.charge_point_id)
        .where(
            ChargePoint.station_id == station_id,
            ChargingProfile.source == "load",
            ChargingProfile.status == "Accepted",
        )
    ).all()
    db.session.commit()
    if not installed:
        return
    answers = calls(
        [Call(row.charge_point_id, "ClearChargingProfile", {"id": row.profile_id}) for row in installed],
        timeout,
    )
    now = datetime.now(UTC)
    for row, answer in zip(installed, answers, strict=True):
        if _answer_status(answer) in ("Accepted", "Unknown"):
            profile = db.session.get(ChargingProfile, row.id)
            profile.status, profile.cleared_at, profile.response = "cleared", now, answer
    db.session.commit()


def _decided_since(station_id: int, at: datetime) -> bool:
    return bool(
        db.session.scalar(
            select(
                exists().where(
                    LoadChange.station_id == station_id, LoadChange.event == "decided", LoadChange.at >= at
                )
            )
        )
    )


class LimitExceeded(AssertionError):
    """Raises would take what the CSMS allowed beyond the site's limit: a bug; nothing is sent.

    Only a raise is checked: the sum may stand above a limit the operator has just lowered (what
    was allowed under the old one), or above it by a charger that refused its profile (counted at
    its maximum) or is out of reach; load management lowers the others first in each case."""


def _record(site: Site, event: str, reason: str, rows: dict[tuple, _Allocation]) -> None:
    allocations = {
        f"{row.charge_point_id}/{row.connector_id}": {
            "allowed": row.allowed,
            "state": row.state,
            "transactionId": row.transaction_id,
        }
        for row in rows.values()
    }
    total = sum(row.allowed for row in rows.values())
    if event == "raising" and total > site.limit:  # a raise is only ever sent within the headroom
        raise LimitExceeded(f"site {site.station_id}: {total} allowed over a limit of {site.limit}")
    db.session.execute(
        insert(LoadChange.__table__),
        {
            "station_id": site.station_id,
            "event": event,
            "reason": reason[:100],
            "limit": site.limit,
            "allowed_sum": total,
            "allocations": allocations,
        },
    )
