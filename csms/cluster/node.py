"""This web process as a member of the cluster: its lease and presence writes (csms.cluster.presence),
its queue (csms.cluster.bus), its ear for announcements (csms.cluster.broadcast), and the routing of
a CSMS-initiated call to whichever node holds the charger.

The gateway calls a charger it holds itself; for any other charger it asks `route()`, which looks up
the holder in PostgreSQL and sends the call to that node's queue. The holder sends it through the
charger's session (one outstanding call per charger, in arrival order, audited there and only
there) and replies with the charger's answer or the failure, which `route()` raises here as the
same exception a local call would: REST answers are the same whichever node serves the request.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import gevent
from flask import has_app_context

from csms.cluster import presence
from csms.cluster.broadcast import Listener
from csms.cluster.bus import Lost, NodeBus, Unreachable
from csms.extensions import db
from csms.ocpp import validation
from csms.ocpp.errors import OcppError
from csms.ocpp.session import CallFailed, CallTimeout, ChargerOffline, NotConnected

if TYPE_CHECKING:
    from flask import Flask

    from csms.ocpp.registry import ConnectionRegistry
    from csms.ocpp.session import OcppSession

log = logging.getLogger(__name__)

# What a routed call may take beyond the charger's own timeout: two hops through RabbitMQ.
ROUTE_MARGIN = 2.0


class Node:
    def __init__(self, app: Flask, node_id: str, registry: ConnectionRegistry):
        self.app = app
        self.node_id = node_id
        self.registry = registry
        self.lease = presence.lease_seconds(app.config["PING_INTERVAL"])
        self.listener = Listener(app)
        self.writer = presence.PresenceWriter(app, node_id, self.lease)
        self.bus: NodeBus | None = None
        self._running = threading.Event()
        self.listener.subscribe(presence.CONNECTED, self._on_connected_elsewhere)

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self, *, with_bus: bool) -> None:
        """Join the cluster: the node's queue (production mode), its lease, its ear."""
        if with_bus:
            self.bus = NodeBus(self.app.config["RABBITMQ_URL"], self.node_id, self._on_call).start()
        with self._own_session() as session:
            presence.join(session, self.node_id, self.queue, self.lease)
        self.listener.start()
        self._running.set()
        threading.Thread(target=self._keep_presence, name="cluster-presence", daemon=True).start()

    def stop(self) -> None:
        """Leave the cluster: this node's chargers stop counting as connected at once."""
        if not self._running.is_set():
            return
        self._running.clear()
        self.listener.stop()
        try:
            with self._own_session() as session:
                presence.leave(session, self.node_id)
        except Exception:
            log.exception("leaving the cluster failed; the lease lapses instead")
        if self.bus is not None:
            self.bus.stop()

    @property
    def queue(self) -> str | None:
        """This node's own RabbitMQ queue (production mode), where other nodes send its calls."""
        return self.bus.queue if self.bus else None

    @contextlib.contextmanager
    def _own_session(self) -> Iterator:
        """A database session of this node's own, outside any request's, removed afterwards."""
        with self.app.app_context():
            try:
                yield db.session
            finally:
                db.session.remove()

    def status(self) -> dict[str, Any]:
        """For `/healthz`: whether this node can route calls and hear announcements."""
        return {
            "lease_seconds": self.lease,
            "queue": self.queue,
            "bus": None if self.bus is None else ("ok" if self.bus.connected.is_set() else "down"),
            "bus_counters": dict(self.bus.counters) if self.bus else None,
            "announcements": "ok" if self.listener.listening.is_set() else "down",
            "announcement_counters": dict(self.listener.counters),
        }

    def _keep_presence(self) -> None:
        renew_every = self.lease / 3
        next_renewal = time.monotonic() + renew_every
        while self._running.is_set():
            self.writer.wait(max(0.0, next_renewal - time.monotonic()))
            try:
                self.writer.flush()
                if time.monotonic() >= next_renewal:
                    next_renewal = time.monotonic() + renew_every
                    self._renew()
            except Exception:
                log.exception("writing this node's presence failed; retrying")
                time.sleep(1.0)

    def _renew(self) -> None:
        with self._own_session() as session:
            outcome = presence.renew(session, self.node_id, self.queue, self.lease)
        if outcome == presence.TAKEN:
            log.error(
                "another process joined the cluster as node %r: give each web process its own "
                "CSMS_NODE_ID (csms-web --processes numbers them); this one's chargers are unreachable "
                "from other nodes meanwhile",
                self.node_id,
            )
        elif outcome == presence.LAPSED:  # the database was out of reach: claim node and chargers again
            log.warning("this node's lease had lapsed; writing its %d connections again", len(self.registry))
            with self._own_session() as session:
                presence.join(session, self.node_id, self.queue, self.lease)
            for session in self.registry.sessions():
                self.writer.opened(_connected(session))

    # --- connections ----------------------------------------------------------------------------

    # A new connection is served once the cluster can see it (a REST call on another node right
    # after the charger's BootNotification finds it), or after this long if the database is slow.
    VISIBLE_WITHIN = 2.0

    def opened(self, session: OcppSession) -> None:
        written = self.writer.opened(_connected(session))
        if self._running.is_set():
            written.wait(self.VISIBLE_WITHIN)

    def closed(self, session: OcppSession) -> None:
        self.writer.closed(session.charge_point_id, session.connection_id)

    def _on_connected_elsewhere(self, key: str) -> None:
        """A newer connection of a charger this node holds, on another node (or a later one here),
        wins: the older one is closed."""
        for charge_point_id, node_id, connection_id, since in presence.parse_announcement(key):
            session = self.registry.get(charge_point_id)
            if session is None or session.connection_id == connection_id:
                continue
            if (session.connected_since, session.connection_id) < (since, connection_id):
                self.registry.counters["replaced_connections"] += 1
                log.info("%s reconnected on node %s; closing this older connection", charge_point_id, node_id)
                reason = f"replaced by a newer connection on {node_id}"[:120]
                threading.Thread(target=session.close, args=(1000, reason), daemon=True).start()

    # --- routing ----------------------------------------------------------------------------------

    def route(
        self, charge_point_id: str, action: str, payload: dict[str, Any], timeout: float, command: dict
    ):
        """Send a call to the node holding `charge_point_id` and return the charger's answer, raising
        what a local call raises (`OcppError`, `ChargerOffline`, `CallTimeout`, `CallFailed`)."""
        if action not in validation.CSMS_ACTIONS:
            raise OcppError("NotSupported", f"{action} is not a Central System action")
        validation.validate_request(action, payload)  # invalid: refused here, nothing sent
        holder = self._holder(charge_point_id)
        if holder is None or holder.node_id == self.node_id or holder.queue is None or self.bus is None:
            raise NotConnected(charge_point_id)
        body = {"chargePointId": charge_point_id, "action": action, "payload": payload}
        body |= {"timeout": timeout, "command": command}
        result = self.bus.request(holder.queue, body, timeout)
        try:
            answer = result.get(timeout=timeout + ROUTE_MARGIN)
        except gevent.Timeout:
            self.bus.forget(result)
            raise CallTimeout(f"node {holder.node_id} did not answer for {charge_point_id} in time") from None
        except Unreachable as exc:
            if exc.gone:  # the node died, its queue with it: nothing was sent, the charger is gone
                raise NotConnected(charge_point_id) from exc
            raise CallTimeout(f"{charge_point_id}: {exc}") from exc
        except Lost as exc:  # sent, maybe answered: unknown, as a timeout
            raise CallTimeout(f"{charge_point_id}: {exc}") from exc
        return _raise_or_return(answer)

    def _holder(self, charge_point_id: str) -> presence.Presence | None:
        """Look the holder up on the caller's database session, ending its transaction (nobody may
        hold one open while waiting for a charger), or on a session of its own outside a request."""
        if has_app_context():
            try:
                return presence.where(db.session, charge_point_id)
            finally:
                db.session.rollback()
        with self._own_session() as session:
            return presence.where(session, charge_point_id)

    def _on_call(self, body: dict[str, Any], reply: Callable[[dict[str, Any]], None]) -> None:
        """A call routed here by another node: sent through the charger's session if it is still here."""
        session = self.registry.get(body["chargePointId"])
        if session is None:
            reply({"error": "not_connected"})
            return
        try:
            answer = session.call(body["action"], body["payload"], body["timeout"], command=body["command"])
        except OcppError as exc:
            reply(
                {"error": "invalid", "code": exc.code, "description": exc.description, "details": exc.details}
            )
        except NotConnected:
            reply({"error": "not_connected"})
        except ChargerOffline:
            reply({"error": "offline"})
        except CallTimeout as exc:
            reply({"error": "timeout", "description": str(exc)})
        except CallFailed as exc:
            reply(
                {"error": "failed", "code": exc.code, "description": exc.description, "details": exc.details}
            )
        except Exception:
            log.exception("%s: a routed %s failed", body["chargePointId"], body["action"])
            reply({"error": "failed", "code": "InternalError", "description": "the node failed to send it"})
        else:
            reply({"result": answer})


def _connected(session: OcppSession) -> presence.Connected:
    return presence.Connected(
        session.charge_point_id, session.connection_id, session.connected_since, session.remote_address
    )


def _raise_or_return(answer: dict[str, Any]) -> dict[str, Any]:
    error = answer.get("error")
    if error is None:
        return answer["result"]
    if error == "not_connected":
        raise NotConnected("the charger disconnected before the call was sent")
    if error == "offline":
        raise ChargerOffline("the charger disconnected")
    if error == "timeout":
        raise CallTimeout(answer.get("description") or "the charger did not answer in time")
    if error == "invalid":
        raise OcppError(answer["code"], answer["description"], answer.get("details"))
    raise CallFailed(answer["code"], answer["description"], answer.get("details"))
