"""The command queue's rules (csms.models.command_queue): queueing, cancelling, claiming a charger's
next command for sending, recording what came of it, and the sweeps that expire what waited too long.

Every change of state is one conditional UPDATE from the state it leaves (`_move`, checked against
`TRANSITIONS`), so two nodes, a sweep and an operator racing on the same command cannot both win:
the one whose update matched no row lost, and knows it.

Queueing announces `QUEUED` (csms.cluster.broadcast) with the charger's id in the same transaction:
the node holding that charger, if any, hears of it when the transaction commits and sends the
command at once. Nothing scans "the queue" as a whole for delivery; a node only ever looks at the
chargers it holds (`waiting_on_node`), so no number of commands waiting for offline chargers slows
the delivery to an online one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, exists, select, update
from sqlalchemy.orm import Session

from csms.cluster import broadcast
from csms.extensions import db
from csms.models import ChargerConnection, ClusterNode, CommandState, QueuedCommand
from csms.models.command_queue import STAMPS, TRANSITIONS
from csms.services.errors import Conflict, NotFound
from csms.services.sql import insert_ignoring_conflicts

QUEUED = "command"  # the announcement of a command queued: its key is the charge point id

DEFAULT_TTL_SECONDS = 3600
MAX_TTL_SECONDS = 7 * 24 * 3600
# The CSMS's own calls (a prepaid session's stop) matter whenever the charger comes back; a stale one
# is harmless (the charger refuses to stop a transaction it no longer has).
CSMS_REQUEST_TTL_SECONDS = MAX_TTL_SECONDS


def _now() -> datetime:
    return datetime.now(UTC)


def _move(
    session: Session, leaving: CommandState, entering: CommandState, *criteria: ColumnElement, **values: Any
) -> int:
    """Move the commands matching `criteria` from `leaving` to `entering` (one of its allowed
    transitions), stamping the state's timestamp; returns how many moved."""
    if entering not in TRANSITIONS[leaving]:
        raise ValueError(f"a command cannot go from {leaving} to {entering}")
    stamp = STAMPS.get(entering)
    if stamp is not None:
        values.setdefault(stamp, _now())
    statement = (
        update(QueuedCommand)
        .where(QueuedCommand.state == leaving.value, *criteria)
        .values(state=entering.value, **values)
        .execution_options(synchronize_session=False)
    )
    return session.execute(statement).rowcount


# --- queueing -----------------------------------------------------------------------------------


def enqueue(
    charge_point_id: str,
    action: str,
    payload: dict[str, Any],
    *,
    ttl_seconds: int = DEFAULT_TTL_SECONDS,
    requested_by: int | None = None,
) -> QueuedCommand:
    """Queue an operator's command for a charger (its payload already checked against the OCPP
    schema); it goes out when the charger is next ready, unless `ttl_seconds` pass first. The
    caller commits."""
    if not 1 <= ttl_seconds <= MAX_TTL_SECONDS:
        raise ValueError(f"ttl_seconds must be 1..{MAX_TTL_SECONDS}")
    now = _now()
    command = QueuedCommand(
        command_id=str(uuid.uuid4()),
        charge_point_id=charge_point_id,
        action=action,
        payload=payload,
        state=CommandState.QUEUED.value,
        requested_by=requested_by,
        created_at=now,
        expires_at=now + timedelta(seconds=ttl_seconds),
    )
    db.session.add(command)
    db.session.flush()
    broadcast.announce(QUEUED, charge_point_id)
    return command


def request(dedup_key: str, charge_point_id: str, action: str, payload: dict[str, Any], reason: str) -> bool:
    """Queue one of the CSMS's own calls (from a worker, which cannot reach a WebSocket); the same
    `dedup_key` is queued once however often it is asked. False when it already was. The caller
    commits."""
    now = _now()
    row = {
        "command_id": str(uuid.uuid4()),
        "charge_point_id": charge_point_id,
        "action": action,
        "payload": payload,
        "state": CommandState.QUEUED.value,
        "reason": reason[:100],
        "dedup_key": dedup_key,
        "created_at": now,
        "expires_at": now + timedelta(seconds=CSMS_REQUEST_TTL_SECONDS),
    }
    inserted = insert_ignoring_conflicts(db.session, QueuedCommand, [row], ["dedup_key"]) == 1
    if inserted:
        broadcast.announce(QUEUED, charge_point_id)
    return inserted


# --- operators ----------------------------------------------------------------------------------


def get(command_id: str) -> QueuedCommand:
    command = db.session.scalar(select(QueuedCommand).where(QueuedCommand.command_id == command_id))
    if command is None:
        raise NotFound(f"no command {command_id!r}", code="command_not_found")
    return command


def cancel(command_id: str) -> QueuedCommand:
    """Withdraw a queued command (and commit); one already sent, finished, or past its expiry is
    refused with 409 `command_not_queued`."""
    command = get(command_id)
    now = _now()
    by_id = QueuedCommand.id == command.id
    if _move(db.session, CommandState.QUEUED, CommandState.CANCELLED, by_id, QueuedCommand.expires_at > now):
        db.session.commit()
        db.session.refresh(command)
        return command
    _move(db.session, CommandState.QUEUED, CommandState.EXPIRED, by_id, QueuedCommand.expires_at <= now)
    db.session.commit()
    db.session.refresh(command)
    raise Conflict(
        f"command {command_id} is {command.state}: only a queued command can be cancelled",
        code="command_not_queued",
        details={"state": command.state},
    )


# --- delivery (on the node holding the charger) -------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    id: int
    command_id: str
    action: str
    payload: dict[str, Any]
    requested_by: int | None
    created_at: datetime


def claim_next(session: Session, charge_point_id: str, node_id: str) -> Claimed | None:
    """Mark the charger's oldest queued command `sent` by `node_id`, commit, and return it (None when
    nothing is queued). Committed before the command is sent: it goes out at most once. An expired
    one met on the way is marked `expired`, never sent. Never skips a command another node is
    claiming: order holds even while a reconnecting charger is briefly held by two nodes."""
    while True:
        now = _now()
        row = session.execute(
            select(QueuedCommand.id, QueuedCommand.expires_at)
            .where(
                QueuedCommand.charge_point_id == charge_point_id,
                QueuedCommand.state == CommandState.QUEUED.value,
            )
            .order_by(QueuedCommand.id)
            .limit(1)
        ).first()
        if row is None:
            session.commit()
            return None
        by_id = QueuedCommand.id == row.id
        if row.expires_at <= now:
            _move(session, CommandState.QUEUED, CommandState.EXPIRED, by_id)
            session.commit()
            continue
        claimed = _move(
            session,
            CommandState.QUEUED,
            CommandState.SENT,
            by_id,
            QueuedCommand.expires_at > now,
            sent_at=now,
            node_id=node_id,
        )
        if not claimed:  # cancelled, expired or claimed meanwhile: look again
            session.commit()
            continue
        command = session.execute(
            select(
                QueuedCommand.id,
                QueuedCommand.command_id,
                QueuedCommand.action,
                QueuedCommand.payload,
                QueuedCommand.requested_by,
                QueuedCommand.created_at,
            ).where(by_id)
        ).one()
        session.commit()
        return Claimed(*command)


def record_answer(session: Session, command_pk: int, response: dict[str, Any]) -> None:
    _move(
        session, CommandState.SENT, CommandState.ANSWERED, QueuedCommand.id == command_pk, response=response
    )
    session.commit()


def record_failure(session: Session, command_pk: int, code: str, description: str) -> None:
    _move(
        session,
        CommandState.SENT,
        CommandState.FAILED,
        QueuedCommand.id == command_pk,
        error_code=code[:40],
        error_description=description[:255],
    )
    session.commit()


def waiting_on_node(session: Session, node_id: str) -> list[str]:
    """The chargers held by `node_id` that have commands queued: what this node's safety sweep looks
    at. Written as one index probe per charger held (a scalar subquery with LIMIT 1): as a join,
    PostgreSQL would read every queued command of every charger to find the few held here (125 ms
    against 19 ms for 15,000 chargers held and 300,000 commands waiting for others), so its cost
    follows the chargers held, never the commands waiting for anyone else."""
    first_queued = (
        select(QueuedCommand.id)
        .where(
            QueuedCommand.charge_point_id == ChargerConnection.charge_point_id,
            QueuedCommand.state == CommandState.QUEUED.value,
        )
        .limit(1)
        .correlate(ChargerConnection)
        .scalar_subquery()
    )
    return list(
        session.scalars(
            select(ChargerConnection.charge_point_id).where(
                ChargerConnection.node_id == node_id, first_queued.is_not(None)
            )
        )
    )


def expire_due(session: Session) -> int:
    """Mark every queued command whose time ran out `expired`; returns how many."""
    return _move(session, CommandState.QUEUED, CommandState.EXPIRED, QueuedCommand.expires_at <= _now())


def fail_orphaned(session: Session) -> int:
    """Commands marked `sent` by a node that died (its lease lapsed) or restarted since will never
    hear their answer: `failed` (NodeLost), never sent again."""
    now = _now()
    sender_alive = exists().where(
        ClusterNode.node_id == QueuedCommand.node_id,
        ClusterNode.expires_at > now,
        ClusterNode.started_at <= QueuedCommand.sent_at,
    )
    return _move(
        session,
        CommandState.SENT,
        CommandState.FAILED,
        ~sender_alive,
        error_code="NodeLost",
        error_description="the node sending it stopped before the charger answered",
    )
