"""Live presence for dashboards: which chargers connected to or left this node, once a second.

The gateway's registry collects the changes; this feed emits them to operators as one
`charger:connection:changed` event per second at most (and as `notification`, like every event), so
a storm of 10,000 reconnections costs a handful of emits, not 10,000.

Each node emits for its own chargers, and the Socket.IO message queue (production mode) carries the
event to the dashboards of every node. What the event says is the cluster's view: `online` counts
the chargers connected to any node (this node's from its registry, the others' from
csms.cluster.presence), and a charger that left this node because it reconnected to another is not
reported offline (the other node reports it online).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime

from flask import Flask

from csms.cluster import presence
from csms.extensions import db, socketio
from csms.realtime import NOTIFICATION, OPERATORS, notification

log = logging.getLogger(__name__)

EVENT = "charger:connection:changed"


class PresenceFeed:
    def __init__(self, app: Flask, interval: float = 1.0) -> None:
        self.app = app
        self.registry = app.extensions["ocpp"].registry
        self.node_id = app.config["NODE_ID"]
        self.interval = interval
        self._running = threading.Event()

    def start(self) -> PresenceFeed:
        self._running.set()
        threading.Thread(target=self._run, name="presence-feed", daemon=True).start()
        return self

    def stop(self) -> None:
        self._running.clear()

    def _run(self) -> None:
        while self._running.is_set():
            time.sleep(self.interval)
            try:
                self.publish_once()
            except Exception:  # best-effort, like every live event: the next second tries again
                log.exception("publishing charger presence failed")

    def publish_once(self) -> None:
        changes = self.registry.drain_changes()
        if not changes:
            return
        left = sorted(cp for cp, connected in changes.items() if not connected)
        with self.app.app_context():
            try:
                held = presence.connections(db.session, left)
                elsewhere = presence.count_connected(db.session, except_node=self.node_id)
            finally:
                db.session.remove()
        moved = {cp for cp, where in held.items() if where.node_id != self.node_id}
        reported = [(cp, connected) for cp, connected in changes.items() if cp not in moved]
        if not reported:
            return
        data = {
            "node": self.node_id,
            "online": elsewhere + len(self.registry),
            "at": datetime.now(UTC).isoformat(),
            "changes": [{"chargePointId": cp, "connected": connected} for cp, connected in reported],
        }
        socketio.emit(EVENT, data, to=OPERATORS, namespace="/")
        # About many chargers at once: a notification without chargerId and deviceId.
        socketio.emit(NOTIFICATION, notification(EVENT, data, None, None), to=OPERATORS, namespace="/")
