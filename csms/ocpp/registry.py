"""The live charger connections of this web node, readable by the API."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from csms.ocpp.session import OcppSession


@dataclass(frozen=True)
class ConnectionInfo:
    charge_point_id: str
    node_id: str
    connected_since: datetime
    last_message_at: datetime | None
    remote_address: str | None


class ConnectionRegistry:
    def __init__(self, node_id: str):
        self.node_id = node_id
        self._sessions: dict[str, OcppSession] = {}
        self._lock = threading.Lock()
        self.counters = {
            "dropped_frames": 0,
            "unexpected_replies": 0,
            "replaced_connections": 0,
            "paced_messages": 0,
        }
        # Connections opened (True) or closed (False) since the last `drain_changes`, for the live
        # dashboard; one entry per charger, however often it reconnected meanwhile.
        self._changes: dict[str, bool] = {}

    def add(self, session: OcppSession) -> OcppSession | None:
        """Register a new connection; returns the one it replaces (a charger that reconnected before
        its old connection timed out), which the caller closes."""
        with self._lock:
            previous = self._sessions.get(session.charge_point_id)
            self._sessions[session.charge_point_id] = session
            self._changes[session.charge_point_id] = True
        if previous is not None:
            self.counters["replaced_connections"] += 1
        return previous

    def remove(self, session: OcppSession) -> None:
        with self._lock:
            if self._sessions.get(session.charge_point_id) is session:
                del self._sessions[session.charge_point_id]
                self._changes[session.charge_point_id] = False

    def drain_changes(self) -> dict[str, bool]:
        """Who connected (True) or disconnected (False) since the previous call."""
        with self._lock:
            changes, self._changes = self._changes, {}
        return changes

    def get(self, charge_point_id: str) -> OcppSession | None:
        return self._sessions.get(charge_point_id)

    def info(self, charge_point_id: str) -> ConnectionInfo | None:
        session = self._sessions.get(charge_point_id)
        return None if session is None else session.info()

    def sessions(self) -> list[OcppSession]:
        return list(self._sessions.values())

    def ids(self) -> set[str]:
        return set(self._sessions)

    def __len__(self) -> int:
        return len(self._sessions)

    def all(self) -> list[ConnectionInfo]:
        return [s.info() for s in list(self._sessions.values())]
