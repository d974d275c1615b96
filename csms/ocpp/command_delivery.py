"""Sending the queued commands (csms.services.command_queue) of the chargers this node holds.

A charger's queue is drained when the charger is ready for it:
- after an accepted BootNotification (and the boot configuration pushed then);
- for a charger that reconnects without booting (it is Accepted already): at its first other
  message, or `QUEUE_BOOT_WAIT` seconds after it connected if it sent nothing meanwhile.

What wakes a drain: the charger becoming ready; a `QUEUED` announcement for a charger held here
(a command queued while it is online: an operator's race with its connection, or the CSMS's own
call from a worker); and a safety sweep every `DISPATCH_INTERVAL` seconds over the chargers this
node holds that have commands waiting (it catches announcements missed while the node's listening
connection was down). The sweep also expires what waited too long and fails what a dead node had
sent, for the whole cluster: those are single conditional UPDATEs, cheap whatever the queue holds.
It expires the reservations past their expiry as well (csms.services.reservations.expire_due: each
a conditional UPDATE, so nodes sweeping together expire and settle each once).

One drain per charger at a time, one command at a time in queue order, each marked `sent` and
committed before it goes out (at most once). A drain that finds the queue empty looks once more if
it was woken meanwhile, so no wake-up falls between its last look and its end.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from csms.extensions import db
from csms.models import RegistrationStatus
from csms.ocpp.errors import OcppError
from csms.ocpp.session import CallFailed, CallTimeout, ChargerOffline
from csms.services import command_queue, reservations

if TYPE_CHECKING:
    from csms.ocpp.gateway import Gateway
    from csms.ocpp.session import OcppSession

log = logging.getLogger(__name__)


class CommandDelivery:
    def __init__(self, gateway: Gateway):
        self.gateway = gateway
        self.app = gateway.app
        self.interval = gateway.config["DISPATCH_INTERVAL"]
        self.boot_wait = gateway.config["QUEUE_BOOT_WAIT"]
        self._lock = threading.Lock()
        self._draining: dict[str, bool] = {}  # charge point id → woken again while draining
        self._running = threading.Event()
        gateway.node.listener.subscribe(command_queue.QUEUED, self.wake)

    def start(self) -> None:
        self._running.set()
        threading.Thread(target=self._sweep_loop, name="command-queue", daemon=True).start()

    def stop(self) -> None:
        self._running.clear()

    # --- readiness ------------------------------------------------------------------------------

    def ready(self, session: OcppSession) -> None:
        """The charger may receive its queued commands now."""
        session.queue_ready = True
        self.wake(session.charge_point_id)

    def _is_ready(self, session: OcppSession) -> bool:
        if session.queue_ready:
            return True
        silent_since_connecting = (
            not session.boot_seen
            and session.registration_status == RegistrationStatus.ACCEPTED
            and time.monotonic() - session.connected_at >= self.boot_wait
        )
        if silent_since_connecting:
            session.queue_ready = True
        return silent_since_connecting

    # --- draining -------------------------------------------------------------------------------

    def wake(self, charge_point_id: str) -> None:
        """Drain the charger's queue if this node holds it and it is ready (else nothing: its
        readiness or the sweep wakes it later)."""
        session = self.gateway.registry.get(charge_point_id)
        if session is None or not self._is_ready(session):
            return
        with self._lock:
            if charge_point_id in self._draining:
                self._draining[charge_point_id] = True
                return
            self._draining[charge_point_id] = False
        threading.Thread(target=self._drain, args=(charge_point_id,), daemon=True).start()

    def _drain(self, charge_point_id: str) -> None:
        try:
            while True:
                session = self.gateway.registry.get(charge_point_id)
                claimed = None
                if session is not None and self._is_ready(session):
                    claimed = self._claim(charge_point_id)
                if claimed is None:
                    with self._lock:
                        if self._draining.get(charge_point_id):
                            self._draining[charge_point_id] = False
                            continue
                        self._draining.pop(charge_point_id, None)
                        return
                self._send(session, claimed)
        except Exception:
            log.exception("%s: delivering queued commands failed", charge_point_id)
            with self._lock:
                self._draining.pop(charge_point_id, None)

    def _claim(self, charge_point_id: str) -> command_queue.Claimed | None:
        with self.app.app_context():
            try:
                return command_queue.claim_next(db.session, charge_point_id, self.gateway.node_id)
            finally:
                db.session.remove()

    def _send(self, session: OcppSession, claimed: command_queue.Claimed) -> None:
        audit = {
            "requested_by": claimed.requested_by,
            "requested_at": claimed.created_at.isoformat(),
            "command_id": claimed.command_id,  # what its answer changes is found by it (call_outcomes)
        }
        failure: tuple[str, str] | None = None
        answer: dict[str, Any] = {}
        try:
            answer = session.call(
                claimed.action, claimed.payload, self.gateway.config["CALL_TIMEOUT"], command=audit
            )
        except OcppError as exc:  # refused before sending (its payload no longer valid)
            failure = (exc.code, exc.description)
        except ChargerOffline:
            failure = ("Disconnected", "the charger disconnected before it answered")
        except CallTimeout as exc:
            failure = ("Timeout", str(exc))
        except CallFailed as exc:
            failure = (exc.code, exc.description)
        except Exception as exc:
            log.exception("%s: sending queued %s failed", session.charge_point_id, claimed.action)
            failure = ("InternalError", str(exc) or type(exc).__name__)
        outcome = f"failed ({failure[0]})" if failure else "answered"
        log.info(
            "%s: queued %s %s → %s", session.charge_point_id, claimed.action, claimed.command_id, outcome
        )
        with self.app.app_context():
            try:
                if failure is None:
                    command_queue.record_answer(db.session, claimed.id, answer)
                else:
                    command_queue.record_failure(db.session, claimed.id, *failure)
            except Exception:  # stays `sent`: never sent again, and the audit has the answer
                log.exception(
                    "%s: recording the outcome of %s failed", session.charge_point_id, claimed.command_id
                )
            finally:
                db.session.remove()

    # --- the sweep ----------------------------------------------------------------------------------

    def _sweep_loop(self) -> None:
        while self._running.is_set():
            time.sleep(self.interval)
            try:
                self.sweep()
            except Exception:
                log.exception("sweeping the command queue failed")

    def sweep(self) -> None:
        """Expire and fail what must be, then wake the chargers held here that have commands waiting."""
        with self.app.app_context():
            try:
                expired = command_queue.expire_due(db.session)
                orphaned = command_queue.fail_orphaned(db.session)
                db.session.commit()
                reservations_expired = reservations.expire_due(db.session)
                db.session.commit()
                waiting = (
                    command_queue.waiting_on_node(db.session, self.gateway.node_id)
                    if len(self.gateway.registry)
                    else []
                )
                db.session.rollback()
            finally:
                db.session.remove()
        if expired or orphaned:
            log.info("command queue: %d expired, %d failed with their node", expired, orphaned)
        if reservations_expired:
            log.info("reservations expired: %s", reservations_expired)
        for charge_point_id in waiting:
            self.wake(charge_point_id)
