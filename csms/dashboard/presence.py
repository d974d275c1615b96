"""Live presence for dashboards: which chargers connected to or left this node, once a second.

The gateway's registry collects the changes; this feed emits them to operators as one
`charger:connection:changed` event per second at most (and as `notification`, like every event), so
a storm of 10,000 reconnections costs a handful of emits, not 10,000.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime

from flask import Flask

from csms.extensions import socketio
from csms.realtime import OPERATORS

log = logging.getLogger(__name__)

EVENT = "charger:connection:changed"


class PresenceFeed:
    def __init__(self, app: Flask, interval: float = 1.0) -> None:
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
        data = {
            "node": self.node_id,
            "online": len(self.registry),
            "at": datetime.now(UTC).isoformat(),
            "changes": [{"chargePointId": cp, "connected": connected} for cp, connected in changes.items()],
        }
        socketio.emit(EVENT, data, to=OPERATORS, namespace="/")
        socketio.emit("notification", {"event": EVENT, "data": data}, to=OPERATORS, namespace="/")
