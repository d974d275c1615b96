"""Who holds which charger, cluster-wide: the node lease and the connection rows (csms.models.cluster).

The node that accepts a charger's WebSocket writes its row; the row counts only while that node's
lease (`cluster_nodes.expires_at`) runs, and the node renews it every third of the lease. A node
killed outright renews nothing: its chargers stop counting as connected when its lease lapses, and
any node's renewal deletes the rows of nodes whose lease has lapsed.

Connections and disconnections are written in batches (`PresenceWriter`): a reconnect storm of
thousands of chargers costs a few transactions, not one each. Each batch announces its new
connections (csms.cluster.broadcast), so the node holding an older connection of the same charger
closes it within moments.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, delete, func, or_, select, update
from sqlalchemy.orm import Session

from csms.cluster import broadcast
from csms.models import ChargerConnection, ClusterNode
from csms.services.sql import upsert

log = logging.getLogger(__name__)

CONNECTED = "connected"  # the announcement of a new connection: "<cp> <node> <connection id> <since>"


@dataclass(frozen=True)
class Presence:
    """Where a charger is connected, as any node sees it."""

    charge_point_id: str
    node_id: str
    since: datetime
    queue: str | None


def lease_seconds(ping_interval: float) -> float:
    """A node's lease: a node that died stops counting within two ping intervals (the issue's
    bound), and a lease survives one missed renewal (renewals come every third of it)."""
    return max(1.5 * ping_interval, 3.0) if ping_interval > 0 else 45.0


def _now() -> datetime:
    return datetime.now(UTC)


def _live(now: datetime):
    return select(ClusterNode.node_id).where(ClusterNode.expires_at > now)


def where(session: Session | Connection, charge_point_id: str) -> Presence | None:
    """The live connection of one charger, with the queue of the node holding it."""
    return connections(session, [charge_point_id]).get(charge_point_id)


def connections(session: Session | Connection, charge_point_ids: list[str]) -> dict[str, Presence]:
    """The live connections among `charge_point_ids`, with the queue of the node holding each (one
    query for a page of chargers, or a site's)."""
    if not charge_point_ids:
        return {}
    rows = session.execute(
        select(
            ChargerConnection.charge_point_id,
            ChargerConnection.node_id,
            ChargerConnection.since,
            ClusterNode.queue,
        )
        .join(ClusterNode, ClusterNode.node_id == ChargerConnection.node_id)
        .where(ChargerConnection.charge_point_id.in_(charge_point_ids), ClusterNode.expires_at > _now())
    )
    return {r.charge_point_id: Presence(r.charge_point_id, r.node_id, r.since, r.queue) for r in rows}


def connected_filter(column: Any, connected: bool) -> Any:
    """A WHERE clause keeping the chargers (by their `charge_point_id` column) that are connected,
    or not, anywhere in the cluster."""
    live = select(ChargerConnection.charge_point_id).where(ChargerConnection.node_id.in_(_live(_now())))
    return column.in_(live) if connected else column.not_in(live)


def count_connected(session: Session, *, except_node: str | None = None) -> int:
    """Chargers connected to any live node (but `except_node`, whose own count its caller knows)."""
    query = (
        select(func.count())
        .select_from(ChargerConnection)
        .where(ChargerConnection.node_id.in_(_live(_now())))
    )
    if except_node is not None:
        query = query.where(ChargerConnection.node_id != except_node)
    return session.scalar(query)


# --- the node's side ----------------------------------------------------------------------------


def join(session: Session, node_id: str, queue: str | None, lease: float) -> None:
    """Start (or restart) as `node_id`: a restarted node holds none of its old connections."""
    now = _now()
    session.execute(delete(ChargerConnection).where(ChargerConnection.node_id == node_id))
    upsert(
        session,
        ClusterNode,
        [
            {
                "node_id": node_id,
                "queue": queue,
                "started_at": now,
                "renewed_at": now,
                "expires_at": now + timedelta(seconds=lease),
            }
        ],
        ["node_id"],
    )
    session.commit()


RENEWED, LAPSED, TAKEN = "renewed", "lapsed", "taken"


def renew(session: Session, node_id: str, queue: str | None, lease: float) -> str:
    """Extend this node's lease and sweep the rows of nodes whose lease lapsed. `LAPSED`: the lease
    ran out meanwhile (the database was out of reach a while): the caller claims its node and
    chargers again. `TAKEN`: another live process joined under this node id since, a configuration
    error (two processes with one CSMS_NODE_ID) that the caller reports rather than fights."""
    now = _now()
    renewed = session.execute(
        update(ClusterNode)
        .where(
            ClusterNode.node_id == node_id,
            ClusterNode.expires_at > now,
            ClusterNode.queue.is_not_distinct_from(queue),
        )
        .values(renewed_at=now, expires_at=now + timedelta(seconds=lease))
    ).rowcount
    outcome = RENEWED
    if renewed != 1:
        other = session.execute(
            select(ClusterNode.queue).where(ClusterNode.node_id == node_id, ClusterNode.expires_at > now)
        ).first()
        outcome = TAKEN if other is not None else LAPSED
    session.execute(
        delete(ChargerConnection).where(
            ChargerConnection.node_id.not_in(_live(now)), ChargerConnection.node_id != node_id
        )
    )
    session.execute(delete(ClusterNode).where(ClusterNode.expires_at < now - timedelta(days=1)))
    session.commit()
    return outcome


def leave(session: Session, node_id: str) -> None:
    """A clean stop: this node's chargers stop counting at once, not when its lease lapses."""
    session.execute(delete(ChargerConnection).where(ChargerConnection.node_id == node_id))
    session.execute(delete(ClusterNode).where(ClusterNode.node_id == node_id))
    session.commit()


@dataclass(frozen=True)
class Connected:
    charge_point_id: str
    connection_id: str
    since: datetime
    remote_address: str | None


def write(
    session: Session, node_id: str, lease: float, opened: list[Connected], closed: list[tuple[str, str]]
) -> None:
    """Record connections opened and closed on this node (with its lease, re-made if it lapsed) and
    announce the opened ones. A row is replaced only by a newer connection; a closed connection
    removes its own row only."""
    now = _now()
    if opened:
        upsert(
            session,
            ClusterNode,
            [{"node_id": node_id, "renewed_at": now, "expires_at": now + timedelta(seconds=lease)}],
            ["node_id"],
        )
        upsert(
            session,
            ChargerConnection,
            [
                {
                    "charge_point_id": c.charge_point_id,
                    "node_id": node_id,
                    "connection_id": c.connection_id,
                    "since": c.since,
                    "remote_address": (c.remote_address or "")[:64] or None,
                }
                for c in opened
            ],
            ["charge_point_id"],
            only_if=lambda table, excluded: or_(
                table.c.since < excluded.since,
                and_(table.c.since == excluded.since, table.c.connection_id < excluded.connection_id),
            ),
        )
    for charge_point_id, connection_id in closed:
        session.execute(
            delete(ChargerConnection).where(
                ChargerConnection.charge_point_id == charge_point_id,
                ChargerConnection.connection_id == connection_id,
            )
        )
    for chunk in _announcements(node_id, opened):
        broadcast.announce(CONNECTED, chunk, session)
    session.commit()


def _announcements(node_id: str, opened: list[Connected]) -> list[str]:
    """The opened connections as `CONNECTED` keys, several per announcement within its size."""
    chunks, lines, size = [], [], 0
    for c in opened:
        line = f"{c.charge_point_id} {node_id} {c.connection_id} {c.since.isoformat()}"
        if size + len(line) + 1 > broadcast.MAX_KEY and lines:
            chunks.append("\n".join(lines))
            lines, size = [], 0
        lines.append(line)
        size += len(line) + 1
    if lines:
        chunks.append("\n".join(lines))
    return chunks


def parse_announcement(key: str) -> list[tuple[str, str, str, datetime]]:
    """`(charge_point_id, node_id, connection_id, since)` of each connection a `CONNECTED` names."""
    parsed = []
    for line in key.split("\n"):
        charge_point_id, node_id, connection_id, since = line.split(" ")
        parsed.append((charge_point_id, node_id, connection_id, datetime.fromisoformat(since)))
    return parsed


class PresenceWriter:
    """Collects this node's connects and disconnects and writes them at once, as a group: whatever
    arrives while one batch is being written goes in the next (see `write`), so a lone connect is
    written in a few milliseconds and a storm of them in a few transactions."""

    def __init__(self, app, node_id: str, lease: float):
        self.app = app
        self.node_id = node_id
        self.lease = lease
        self._opened: dict[str, Connected] = {}
        self._closed: dict[str, list[str]] = {}  # charger → its connections that ended
        self._written: list[threading.Event] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()

    def opened(self, connection: Connected) -> threading.Event:
        """Queue a new connection; the event is set once it is written (or its batch failed: nobody
        waits for a database that is down)."""
        written = threading.Event()
        with self._lock:
            self._opened[connection.charge_point_id] = connection
            # a newer connection's row replaces any older one: their removals are moot
            self._closed.pop(connection.charge_point_id, None)
            self._written.append(written)
        self._wake.set()
        return written

    def closed(self, charge_point_id: str, connection_id: str) -> None:
        with self._lock:
            pending = self._opened.get(charge_point_id)
            if pending is not None and pending.connection_id == connection_id:
                del self._opened[charge_point_id]  # opened and closed before anyone saw it
            elif pending is None:
                self._closed.setdefault(charge_point_id, []).append(connection_id)
        self._wake.set()

    def wait(self, timeout: float) -> None:
        """Until there is something to write, or `timeout` seconds."""
        self._wake.wait(timeout)
        self._wake.clear()

    def flush(self) -> None:
        with self._lock:
            opened, self._opened = list(self._opened.values()), {}
            closed = [(cp, connection) for cp, ended in self._closed.items() for connection in ended]
            self._closed = {}
            written, self._written = self._written, []
        if not opened and not closed:
            return
        from csms.extensions import db

        try:
            with self.app.app_context():
                try:
                    write(db.session, self.node_id, self.lease, opened, closed)
                except Exception:
                    db.session.rollback()
                    with self._lock:  # kept for the next try; newer news of the same charger wins
                        for c in opened:
                            self._opened.setdefault(c.charge_point_id, c)
                        for cp, connection in closed:
                            if cp not in self._opened:
                                self._closed.setdefault(cp, []).insert(0, connection)
                    raise
                finally:
                    db.session.remove()
        finally:
            for event in written:
                event.set()
