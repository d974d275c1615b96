"""Presence rows and node leases (csms.cluster.presence) on SQLite and PostgreSQL, and the node's side
of routing (csms.cluster.node) without a broker: who counts as connected, which connection wins, and
how a routed call's outcome travels back as the same exception a local call raises."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from csms.cluster import broadcast, presence
from csms.cluster.node import Node, _raise_or_return
from csms.extensions import db
from csms.models import ChargerConnection, ClusterNode
from csms.ocpp.errors import OcppError
from csms.ocpp.registry import ConnectionRegistry
from csms.ocpp.session import CallFailed, CallTimeout, ChargerOffline, NotConnected

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def opened(cp: str, connection_id: str, seconds: float = 0) -> presence.Connected:
    return presence.Connected(cp, connection_id, T0 + timedelta(seconds=seconds), "10.0.0.1")


def rows() -> dict[str, tuple[str, str]]:
    return {
        r.charge_point_id: (r.node_id, r.connection_id) for r in db.session.scalars(select(ChargerConnection))
    }


def test_a_connection_counts_while_its_node_lease_runs(any_db_app):
    presence.join(db.session, "node-a", "queue-a", lease=30)
    presence.write(db.session, "node-a", 30, [opened("CP-1", "c1")], [])
    found = presence.where(db.session, "CP-1")
    assert (found.node_id, found.since, found.queue) == ("node-a", T0, "queue-a")
    assert presence.connections(db.session, ["CP-1", "CP-2"]) == {"CP-1": found}
    with db.engine.connect() as connection:  # on a connection of its own too (charger_calls.BusCalls)
        assert presence.connections(connection, ["CP-1"]) == {"CP-1": found}
    db.session.execute(update(ClusterNode).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    db.session.commit()
    assert presence.where(db.session, "CP-1") is None
    assert presence.connections(db.session, ["CP-1"]) == {}


def test_a_newer_connection_wins_wherever_it_lands_and_an_older_one_never_does(any_db_app):
    for node in ("node-a", "node-b"):
        presence.join(db.session, node, f"queue-{node}", lease=30)
    presence.write(db.session, "node-a", 30, [opened("CP-1", "old")], [])
    presence.write(db.session, "node-b", 30, [opened("CP-1", "new", seconds=5)], [])
    assert rows() == {"CP-1": ("node-b", "new")}
    presence.write(db.session, "node-a", 30, [opened("CP-1", "late-but-older", seconds=1)], [])
    assert rows() == {"CP-1": ("node-b", "new")}
    # the older connection's close removes nothing of the newer one's; the newer one's close does
    presence.write(db.session, "node-a", 30, [], [("CP-1", "old")])
    assert rows() == {"CP-1": ("node-b", "new")}
    presence.write(db.session, "node-b", 30, [], [("CP-1", "new")])
    assert rows() == {}


def test_renewal_extends_the_lease_and_sweeps_dead_nodes(any_db_app):
    presence.join(db.session, "alive", "q1", lease=30)
    presence.join(db.session, "dead", "q2", lease=30)
    presence.write(db.session, "dead", 30, [opened("CP-D", "d")], [])
    presence.write(db.session, "alive", 30, [opened("CP-A", "a")], [])
    db.session.execute(
        update(ClusterNode)
        .where(ClusterNode.node_id == "dead")
        .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    )
    db.session.commit()
    assert presence.renew(db.session, "alive", "q1", 30) == presence.RENEWED
    assert rows() == {"CP-A": ("alive", "a")}
    assert presence.renew(db.session, "dead", "q2", 30) == presence.LAPSED  # it claims its chargers again


def test_a_second_process_under_the_same_node_id_is_told_apart(any_db_app):
    presence.join(db.session, "node-a", "first-queue", lease=30)
    presence.join(db.session, "node-a", "second-queue", lease=30)  # misconfigured: the same id
    assert presence.renew(db.session, "node-a", "first-queue", 30) == presence.TAKEN
    assert presence.renew(db.session, "node-a", "second-queue", 30) == presence.RENEWED


def test_a_restarted_node_holds_none_of_its_old_connections_and_a_clean_stop_lets_go_at_once(any_db_app):
    presence.join(db.session, "node-a", "q-old", lease=30)
    presence.write(db.session, "node-a", 30, [opened("CP-1", "c1"), opened("CP-2", "c2")], [])
    presence.join(db.session, "node-a", "q-new", lease=30)
    assert rows() == {}
    assert db.session.scalar(select(ClusterNode.queue)) == "q-new"
    presence.write(db.session, "node-a", 30, [opened("CP-1", "c3")], [])
    presence.leave(db.session, "node-a")
    assert rows() == {} and db.session.scalar(select(ClusterNode.node_id)) is None


@pytest.mark.parametrize("connected", [True, False])
def test_connected_filter(any_db_app, connected):
    from csms.models import ChargePoint
    from csms.services import chargers

    for cp in ("CP-1", "CP-2", "CP-3"):
        chargers.register(cp, "k" * 20, connectors=1)
    presence.join(db.session, "node-a", "q", lease=30)
    presence.write(db.session, "node-a", 30, [opened("CP-2", "c2")], [])
    query = select(ChargePoint.charge_point_id).where(
        presence.connected_filter(ChargePoint.charge_point_id, connected)
    )
    expected = ["CP-2"] if connected else ["CP-1", "CP-3"]
    assert sorted(db.session.scalars(query)) == expected


def test_new_connections_are_announced_in_chunks_that_fit_a_notification(app):
    heard: list[str] = []
    app.extensions["broadcasts"].subscribe(presence.CONNECTED, heard.append)
    many = [opened(f"CP-{n:05d}-{'x' * 30}", f"{n:016x}", seconds=n / 1000) for n in range(600)]
    presence.join(db.session, "node-a", "q", lease=30)
    presence.write(db.session, "node-a", 30, many, [])
    assert len(heard) > 1 and all(len(key.encode()) <= broadcast.MAX_KEY for key in heard)
    parsed = [entry for key in heard for entry in presence.parse_announcement(key)]
    assert parsed == [(c.charge_point_id, "node-a", c.connection_id, c.since) for c in many]


def test_an_announcement_rolled_back_is_never_heard(app):
    heard: list[str] = []
    app.extensions["broadcasts"].subscribe("charger", heard.append)
    broadcast.announce("charger", "CP-1")
    db.session.rollback()
    broadcast.announce("charger", "CP-2")
    db.session.commit()
    assert heard == ["CP-2"]
    with pytest.raises(ValueError):
        broadcast.announce("two words", "CP-3")


class FakeSession:
    def __init__(self, cp: str, connection_id: str, since: datetime, outcome=None):
        self.charge_point_id, self.connection_id, self.connected_since = cp, connection_id, since
        self.outcome = outcome
        self.closed_with: tuple | None = None
        self.calls: list = []

    def close(self, code: int, reason: str) -> None:
        self.closed_with = (code, reason)

    def call(self, action, payload, timeout, *, command):
        self.calls.append((action, payload, timeout, command))
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


@pytest.fixture
def node(app):
    registry = ConnectionRegistry("node-a")
    return Node(app, "node-a", registry), registry


def test_an_older_connection_here_is_closed_when_a_newer_one_is_announced(node):
    import time

    node, registry = node
    older = FakeSession("CP-1", "aaa", T0)
    registry.add(older)
    node._on_connected_elsewhere(f"CP-1 node-b bbb {(T0 + timedelta(seconds=1)).isoformat()}")
    deadline = time.monotonic() + 5
    while older.closed_with is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert older.closed_with == (1000, "replaced by a newer connection on node-b")
    newer = FakeSession("CP-2", "zzz", T0 + timedelta(seconds=9))
    registry.add(newer)
    node._on_connected_elsewhere(f"CP-2 node-b bbb {T0.isoformat()}")  # an older one elsewhere: kept
    time.sleep(0.1)
    assert newer.closed_with is None


@pytest.mark.parametrize(
    ("outcome", "reply"),
    [
        ({"status": "Accepted"}, {"result": {"status": "Accepted"}}),
        (ChargerOffline("CP-1"), {"error": "offline"}),
        (CallTimeout("slow"), {"error": "timeout", "description": "slow"}),
        (
            CallFailed("NotSupported", "no", {"a": 1}),
            {"error": "failed", "code": "NotSupported", "description": "no", "details": {"a": 1}},
        ),
        (
            OcppError("PropertyConstraintViolation", "bad", {"f": "x"}),
            {
                "error": "invalid",
                "code": "PropertyConstraintViolation",
                "description": "bad",
                "details": {"f": "x"},
            },
        ),
    ],
)
def test_a_routed_call_travels_back_as_the_exception_a_local_call_raises(node, outcome, reply):
    node, registry = node
    session = FakeSession("CP-1", "c", T0, outcome)
    registry.add(session)
    replies: list = []
    body = {"chargePointId": "CP-1", "action": "Reset", "payload": {"type": "Soft"}, "timeout": 7.0}
    node._on_call(body | {"command": {"requested_by": 3}}, replies.append)
    assert replies == [reply]
    assert session.calls == [("Reset", {"type": "Soft"}, 7.0, {"requested_by": 3})]
    if isinstance(outcome, Exception):
        with pytest.raises(type(outcome)):
            _raise_or_return(replies[0])
    else:
        assert _raise_or_return(replies[0]) == outcome


def test_a_call_for_a_charger_no_longer_here_is_answered_not_connected(node):
    node, _ = node
    replies: list = []
    node._on_call(
        {"chargePointId": "CP-9", "action": "Reset", "payload": {}, "timeout": 1, "command": {}},
        replies.append,
    )
    assert replies == [{"error": "not_connected"}]  # nothing was sent: queueable
    with pytest.raises(NotConnected):
        _raise_or_return(replies[0])


def test_without_a_holder_or_a_bus_a_call_is_offline_and_an_invalid_one_refused_first(node):
    node, _ = node
    with pytest.raises(OcppError) as invalid:
        node.route("CP-1", "Reset", {"type": "Sideways"}, 1.0, {})
    assert invalid.value.code == "PropertyConstraintViolation"
    with pytest.raises(NotConnected):
        node.route("CP-1", "Reset", {"type": "Soft"}, 1.0, {})


def test_the_writer_batches_keeps_what_failed_and_drops_what_a_newer_connection_made_moot(app, monkeypatch):
    presence.join(db.session, "node-a", "q", lease=30)
    writer = presence.PresenceWriter(app, "node-a", lease=30)
    first = writer.opened(opened("CP-1", "c1"))
    writer.opened(opened("CP-2", "c2"))
    writer.flush()
    assert first.is_set() and rows() == {"CP-1": ("node-a", "c1"), "CP-2": ("node-a", "c2")}

    def database_down(*args, **kwargs):
        raise RuntimeError("database down")

    monkeypatch.setattr(presence, "write", database_down)
    writer.closed("CP-1", "c1")
    writer.closed("CP-2", "c2")
    waiting = writer.opened(opened("CP-3", "c3"))
    with pytest.raises(RuntimeError):
        writer.flush()
    assert waiting.is_set()  # nobody waits for a database that is down
    writer.opened(opened("CP-2", "c2-again", seconds=5))  # CP-2 is back: its old row's removal is moot
    monkeypatch.undo()
    writer.flush()
    assert rows() == {"CP-2": ("node-a", "c2-again"), "CP-3": ("node-a", "c3")}
    writer.opened(opened("CP-4", "c4"))
    writer.closed("CP-4", "c4")  # opened and closed between two writes: nothing to write
    writer.flush()
    assert "CP-4" not in rows()
