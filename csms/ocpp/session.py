"""One charger's connection: a synchronous receive loop (a greenlet under gevent), immediate replies,
and the charger's one outstanding CSMS-initiated CALL.

The `ocpp` library's `ChargePoint` is asyncio-only; this reuses its schemas and `call_result`
dataclasses instead, and runs under gevent like the rest of the web process.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ocpp.charge_point import remove_nones, snake_to_camel_case
from simple_websocket import ConnectionClosed
from wsproto.events import CloseConnection
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import LocalProtocolError

from csms import metrics
from csms.ocpp import errors, frames, pacing, validation, websocket
from csms.ocpp.errors import OcppError
from csms.ocpp.open_transactions import OpenTransactions
from csms.ocpp.registry import ConnectionInfo
from csms.ocpp.v16.handlers import HANDLERS
from csms.services.clock import utc_now_iso

if TYPE_CHECKING:
    from csms.ocpp.gateway import ChargerRecord, Gateway

log = logging.getLogger(__name__)

# Answered only after the event is durably handed off (SPEC "Guarantees"); MeterValues too when it
# belongs to a transaction.
DURABLE_ACTIONS = frozenset({"StartTransaction", "StopTransaction"})


@functools.cache
def _payload_fields(cls: type) -> tuple[tuple[str, str], ...]:
    # the library's own key conversion, applied to each field name once
    return tuple((f.name, next(iter(snake_to_camel_case({f.name: None})))) for f in fields(cls))


def to_payload(result: Any) -> dict[str, Any]:
    """A `call_result` dataclass as the camelCase payload the library would send, without its deep
    copy (`asdict`) of every reply."""
    payload = {}
    for name, camel in _payload_fields(type(result)):
        value = getattr(result, name)
        if value is None:
            continue
        if is_dataclass(value):
            value = to_payload(value)
        elif isinstance(value, dict | list):
            value = remove_nones(snake_to_camel_case(value))
        payload[camel] = value
    return payload


# Event ids: unique across processes and restarts through a random prefix drawn at start, and
# cheaper than a UUID per frame.
_EVENT_PREFIX = secrets.token_hex(8)
_event_numbers = itertools.count(1)


def new_event_id() -> str:
    return f"{_EVENT_PREFIX}-{next(_event_numbers):x}"


@dataclass
class _PendingCall:
    unique_id: str
    action: str
    done: threading.Event = field(default_factory=threading.Event)
    reply: frames.CallResult | frames.CallError | None = None


class CallFailed(Exception):
    """The charger answered a CSMS-initiated call with a CALLERROR, or with an invalid CALLRESULT."""

    def __init__(self, code: str, description: str, details: Any = None):
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.details = details


class CallTimeout(Exception):
    """No answer within the timeout (or the charger stayed busy with an earlier call)."""


class ChargerOffline(Exception):
    """The charger is not connected to this node, or disconnected while the call was pending."""


class NotConnected(ChargerOffline):
    """No node holds the charger: the call was not sent (unlike a disconnection while it was under
    way), so it may be queued for the charger's return without any risk of it arriving twice."""


class OcppSession:
    def __init__(self, gateway: Gateway, ws: Any, charger: ChargerRecord, remote_address: str | None):
        self.gateway = gateway
        self.ws = ws
        self.charge_point_id = charger.charge_point_id
        self.charge_point_pk = charger.pk
        self.registration_status = charger.registration_status
        self.remote_address = remote_address
        self.connected_since = datetime.now(UTC)
        self.connection_id = secrets.token_hex(8)  # tells this connection from a later one, cluster-wide
        self.open_transactions = OpenTransactions()
        self.last_message_at: str | None = None  # ISO 8601
        self.closed = False
        self._received = 0.0  # perf_counter() when the frame being handled was read
        self.send_lock = threading.Lock()
        self._plain_frames = websocket.plain_frames(ws)
        self._pacer = pacing.pacer_for(gateway.config, self._on_paced)
        self._paced = False
        self.next_ping = time.monotonic() + gateway.keepalive.interval
        self._call_lock = threading.Lock()
        self._pending: _PendingCall | None = None
        # the command queue (csms.ocpp.command_delivery): may its queued commands go out yet?
        self.connected_at = time.monotonic()
        self.queue_ready = False
        self.boot_seen = False
        self._first_call = True

    def info(self) -> ConnectionInfo:
        return ConnectionInfo(
            self.charge_point_id,
            self.gateway.node_id,
            self.connected_since,
            datetime.fromisoformat(self.last_message_at) if self.last_message_at else None,
            self.remote_address,
        )

    # --- the receive loop -----------------------------------------------------------------------

    def run(self) -> None:
        metrics.CHARGERS_CONNECTED.inc()
        previous = self.gateway.registry.add(self)
        self.gateway.node.opened(self)
        if previous is not None:
            previous.close(1000, "replaced by a newer connection")
        log.info("%s connected from %s", self.charge_point_id, self.remote_address)
        try:
            for raw in websocket.messages(self.ws, self.send_lock, self._pacer):
                self.handle(raw)
        except ConnectionClosed:
            pass
        finally:
            self.closed = True
            metrics.CHARGERS_CONNECTED.dec()
            self.gateway.registry.remove(self)
            self.gateway.node.closed(self)
            self.gateway.charger_left(self)
            pending = self._pending
            if pending is not None:
                pending.done.set()
            log.info("%s disconnected", self.charge_point_id)

    def _on_paced(self, pause: float) -> None:
        self.gateway.registry.counters["paced_messages"] += 1
        if not self._paced:
            self._paced = True
            log.info("%s: sends faster than CSMS_CHARGER_RATE; its messages are paced", self.charge_point_id)

    def handle(self, raw: str | bytes) -> None:
        """Process one WebSocket message. Never raises: a bad frame is answered or counted."""
        self._received = time.perf_counter()
        received_at = self.last_message_at = utc_now_iso()
        try:
            frame = frames.parse(raw)
        except frames.FrameError as exc:
            self._on_bad_frame(exc, raw, received_at)
            return
        try:
            if isinstance(frame, frames.Call):
                self._on_call(frame, received_at, raw)
            else:
                self._on_reply(frame, received_at)
        except ConnectionClosed:
            raise
        except Exception:
            log.exception("%s: unexpected failure handling a frame", self.charge_point_id)

    def _on_bad_frame(self, exc: frames.FrameError, raw: str | bytes, received_at: str) -> None:
        if exc.unique_id is None:
            self.gateway.registry.counters["dropped_frames"] += 1
            metrics.OCPP_DROPPED_FRAMES.inc()
            log.info("%s: dropped a frame with no readable id (%s)", self.charge_point_id, exc.description)
            return
        if exc.description == frames.TOO_DEEP:
            log.warning("%s: refused %r: %s", self.charge_point_id, exc.unique_id, exc.description)
        text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
        request = self._frame(
            "in", frames.CALL, exc.unique_id, None, {"invalidFrame": text[:2000]}, received_at
        )
        self._answer(request, exc.unique_id, None, OcppError(exc.code, exc.description), durable=False)

    def _on_call(self, call: frames.Call, received_at: str, raw: str | bytes) -> None:
        action = call.action
        first, self._first_call = self._first_call, False
        if action == "BootNotification":
            self.boot_seen = True
        request = self._frame("in", frames.CALL, call.unique_id, action, call.payload, received_at)
        try:
            response = self._decide(call)
        except OcppError as exc:
            refusal = exc
            if frames.nests_deeper(call.payload):
                # neither the validators nor the hand-off's encoder may see it: kept as text
                text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
                request["payload"] = {"invalidFrame": text[:2000]}
                description = f"payload nests deeper than {frames.MAX_DEPTH} levels"
                refusal = OcppError(errors.FORMATION_VIOLATION, description)
                log.warning("%s: refused %r: %s", self.charge_point_id, call.unique_id, description)
            self._answer(request, call.unique_id, action, refusal, durable=False)
            return
        durable = action in DURABLE_ACTIONS or (action == "MeterValues" and "transactionId" in call.payload)
        self._answer(request, call.unique_id, action, response, durable=durable)
        if action == "BootNotification" and response.get("status") == "Accepted":
            self.gateway.after_accepted_boot(self)
        elif first and action != "BootNotification" and self.registration_status == "Accepted":
            self.gateway.delivery.ready(self)  # reconnected without booting: its queue may go out

    def _decide(self, call: frames.Call) -> dict[str, Any]:
        action = call.action
        if action not in validation.CHARGER_ACTIONS:
            if action in validation.CSMS_ACTIONS:
                raise OcppError(errors.NOT_SUPPORTED, f"{action} is sent by the Central System, not to it")
            raise OcppError(errors.NOT_IMPLEMENTED, f"unknown action {action[:40]!r}")
        if self.registration_status != "Accepted" and action != "BootNotification":
            raise OcppError(errors.SECURITY_ERROR, f"not accepted ({self.registration_status}): boot first")
        validation.validate_request(action, call.payload)
        try:
            response = to_payload(HANDLERS[action](self, call.payload))
            validation.validate_response(action, response)
        except OcppError as exc:
            log.error("%s: our own %s reply is invalid: %s", self.charge_point_id, action, exc)
            raise OcppError(
                errors.INTERNAL_ERROR, "the Central System failed to process the request"
            ) from exc
        except Exception as exc:
            log.exception("%s: %s handler failed", self.charge_point_id, action)
            raise OcppError(
                errors.INTERNAL_ERROR, "the Central System failed to process the request"
            ) from exc
        return response

    def _answer(
        self,
        request: dict[str, Any],
        unique_id: str,
        action: str | None,
        outcome: dict[str, Any] | OcppError,
        *,
        durable: bool,
    ) -> None:
        """Hand the exchange off (durably when asked), then send the reply."""
        now = utc_now_iso()
        if isinstance(outcome, OcppError):
            reply_text = frames.encode_error(unique_id, outcome.code, outcome.description, outcome.details)
            reply = self._frame("out", frames.CALLERROR, unique_id, action, outcome.details, now)
            reply.update(error_code=outcome.code, error_description=outcome.description)
        else:
            reply_text = frames.encode_result(unique_id, outcome)
            reply = self._frame("out", frames.CALLRESULT, unique_id, action, outcome, now)
        kept = self.gateway.hand_off(self, [request, reply], durable=durable)
        if not kept:
            # Nothing may be acknowledged that could not be kept: the charger will retry.
            reply_text = frames.encode_error(
                unique_id, errors.INTERNAL_ERROR, "could not store the message; please retry"
            )
        self.send(reply_text)
        metrics.answered(
            action if action in validation.CHARGER_ACTIONS else "other",
            "error" if isinstance(outcome, OcppError) or not kept else "result",
            time.perf_counter() - self._received,
        )

    def _frame(
        self,
        direction: str,
        message_type: int,
        unique_id: str,
        action: str | None,
        payload: Any,
        at: str,
    ) -> dict[str, Any]:
        return {
            "event_id": new_event_id(),
            "direction": direction,
            "message_type": message_type,
            "unique_id": unique_id[: frames.MAX_UNIQUE_ID],
            "action": action,
            "payload": payload,
            "at": at,
        }

    # --- CSMS-initiated calls -------------------------------------------------------------------

    def _on_reply(self, reply: frames.CallResult | frames.CallError, received_at: str) -> None:
        pending = self._pending
        if pending is None or pending.unique_id != reply.unique_id:
            self.gateway.registry.counters["unexpected_replies"] += 1
            log.info("%s: reply %r matches no pending call; ignored", self.charge_point_id, reply.unique_id)
            return
        pending.reply = reply
        pending.done.set()

    def call(
        self, action: str, payload: dict[str, Any], timeout: float, *, command: dict | None = None
    ) -> dict:
        """Send a CALL and wait for its answer; one outstanding call per charger, others wait in turn.

        Raises `OcppError` (payload invalid, nothing sent), `ChargerOffline`, `CallTimeout` or
        `CallFailed`; returns the CALLRESULT payload.
        """
        if action not in validation.CSMS_ACTIONS:
            raise OcppError(errors.NOT_SUPPORTED, f"{action} is not a Central System action")
        validation.validate_request(action, payload)
        started = time.monotonic()
        if not self._call_lock.acquire(timeout=timeout):
            raise CallTimeout(f"{self.charge_point_id} stayed busy with an earlier call for {timeout:g}s")
        try:
            if self.closed:
                raise NotConnected(self.charge_point_id)
            pending = _PendingCall(str(uuid.uuid4()), action)
            self._pending = pending
            sent_at = utc_now_iso()
            request = self._frame("out", frames.CALL, pending.unique_id, action, payload, sent_at)
            self.send(frames.encode_call(pending.unique_id, action, payload))
            pending.done.wait(max(0.0, timeout - (time.monotonic() - started)))
        except ConnectionClosed as exc:
            raise ChargerOffline(self.charge_point_id) from exc
        finally:
            self._pending = None
            self._call_lock.release()
        elapsed = time.monotonic() - started
        outcome = "answered"
        try:
            return self._settle(pending, request, int(elapsed * 1000), command or {})
        except CallTimeout:
            outcome = "timeout"
            raise
        except ChargerOffline:
            outcome = "offline"
            raise
        except CallFailed:
            outcome = "call_error"
            raise
        finally:
            metrics.commanded(action, outcome, elapsed)

    def _settle(self, pending: _PendingCall, request: dict, latency_ms: int, command: dict) -> dict:
        reply = pending.reply
        audit = {**command, "action": pending.action, "latency_ms": latency_ms}
        if reply is None:
            audit["outcome"] = "offline" if self.closed else "timeout"
            self.gateway.hand_off(self, [request], durable=False, command=audit)
            if self.closed:
                raise ChargerOffline(self.charge_point_id)
            raise CallTimeout(f"{self.charge_point_id} did not answer {pending.action} in time")
        now = utc_now_iso()
        if isinstance(reply, frames.CallError):
            details = frames.storable(reply.error_details)
            answer = self._frame("in", frames.CALLERROR, reply.unique_id, pending.action, details, now)
            answer.update(error_code=reply.error_code, error_description=reply.error_description[:255])
            audit.update(
                outcome="call_error", error_code=reply.error_code, error_description=reply.error_description
            )
            self.gateway.hand_off(self, [request, answer], durable=False, command=audit)
            raise CallFailed(reply.error_code, reply.error_description, details)
        answer = self._frame("in", frames.CALLRESULT, reply.unique_id, pending.action, reply.payload, now)
        try:
            validation.validate_response(pending.action, reply.payload)
        except OcppError as exc:
            answer["payload"] = frames.storable(reply.payload)
            audit.update(outcome="invalid", error_code=exc.code, error_description=exc.description)
            self.gateway.hand_off(self, [request, answer], durable=False, command=audit)
            raise CallFailed(exc.code, f"the charger's answer is invalid: {exc.description}") from exc
        audit.update(outcome="answered", response=reply.payload)
        self.gateway.hand_off(self, [request, answer], durable=False, command=audit)
        return reply.payload

    # --- sending --------------------------------------------------------------------------------

    def send(self, text: str) -> None:
        """Send one message; a charger that has taken nothing of it for a ping interval is cut off
        (`ConnectionClosed`), so neither its send lock nor the greenlet sending stays held."""
        with self.send_lock:
            try:
                websocket.send_text(
                    self.ws, text, self._plain_frames, self.gateway.keepalive.interval or None
                )
            except TimeoutError:
                log.info("%s: took nothing for a ping interval; closing", self.charge_point_id)
                websocket.cut_off(self.ws)
                raise ConnectionClosed(CloseReason.ABNORMAL_CLOSURE, "write timeout") from None

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Send a close frame and end the connection (its receive loop returns at once); a charger
        that takes no close frame within `PING_WRITE_SECONDS` is cut off all the same."""
        ws = self.ws
        with self.send_lock:
            if ws.connected:
                ws.connected = False
                with contextlib.suppress(OSError, TimeoutError, LocalProtocolError):
                    frame = ws.ws.send(CloseConnection(code=code, reason=reason))
                    websocket.write(ws.sock, frame, websocket.PING_WRITE_SECONDS)
        websocket.end_transport(ws.sock)
