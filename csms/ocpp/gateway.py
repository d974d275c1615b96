"""The gateway of one web node: who may connect, who is connected, and how their messages leave.

REST views use `call()` to reach a charger, on this node or any other; the command queue
(csms.ocpp.command_delivery) sends what waited for the chargers held here.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import Flask
from gevent import monkey
from sqlalchemy import select

from csms.broker import is_embedded
from csms.cluster.broadcast import Listener
from csms.cluster.node import Node
from csms.expiring_cache import ExpiringCache
from csms.extensions import db
from csms.models import ChargePoint, RegistrationStatus
from csms.ocpp.command_delivery import CommandDelivery
from csms.ocpp.group_commit import GroupCommit
from csms.ocpp.registry import ConnectionRegistry
from csms.ocpp.session import OcppSession
from csms.ocpp.websocket import Keepalive
from csms.offload import off_the_hub
from csms.pipeline import addresses
from csms.pipeline.handoff import Handoff, build_handoff
from csms.services import chargers, credentials, id_tags, transactions, wallet
from csms.services.authorization import IdTagCache
from csms.services.chargers import parse_boot_configuration
from csms.services.errors import ServiceError
from csms.services.prepaid import StandingCache

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChargerRecord:
    pk: int
    charge_point_id: str
    auth_key_hash: str | None
    registration_status: str
    security_profile: int


class HandshakeRefused(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class ChargerAuthenticator:
    """Who may connect, by each charger's OCPP security profile: 1 (the default), HTTP Basic on the
    upgrade, user = chargePointId, password = its key; 2, the same over TLS; 0, no credentials at
    all, the charger identified by its URL alone (legacy chargers without Basic auth), for the
    chargers an operator set so and no other.

    A connect storm of thousands of chargers must not cost a database query and a PBKDF2 each: the
    whole charger directory is loaded in one query at start and reloaded every `ttl / 2` seconds (a
    charger added since is looked up on its own), and a successful check is remembered as (stored
    hash, SHA-256 of the presented key); a changed key or a different password goes through the full
    check again, off the gevent hub.

    What unauthenticated clients can make it hold is bounded: a chargePointId that no charger can have
    is refused without a lookup; an unknown one is remembered in an `ExpiringCache` (at most
    `UNKNOWN_MAX` ids, each for `ttl`); the directory and the verified keys hold registered chargers
    only, and each reload drops those deleted since. A handshake without credentials costs no query
    for a charger the directory answers for (`_lookup_without_credentials`), so a flood of them for
    made-up ids costs what it cost before profile 0 existed: nothing but a dictionary look-up.

    A charger created, changed or deleted anywhere in the cluster is announced (csms.services.chargers)
    and the gateway calls `forget` (one charger) or `reload` (a fleet import) on every node, so the
    change holds at once, not after `ttl`. A lookup or a load that was reading while such a change
    came in keeps what it read out of the cache (it may predate the change): `_generation` counts
    the changes, and what was read is cached only if none came in meanwhile.
    """

    UNKNOWN_MAX = 10_000

    def __init__(self, ttl: float, auto_register: bool):
        self.ttl = ttl
        self.auto_register = auto_register
        self._records: dict[str, tuple[float, ChargerRecord]] = {}
        self._unknown = ExpiringCache(self.UNKNOWN_MAX, ttl)
        self._verified: dict[str, tuple[str, bytes]] = {}
        self._lock = threading.Lock()
        self._generation = 0  # changes heard of so far; see the class docstring
        self._loading = threading.Lock()  # one load at a time: a later load never loses to an earlier one
        # Until when the last whole load answers for a charger it does not hold (it did not exist),
        # except for the chargers changed since (`_changed`), which the load may predate.
        self._complete_until = -float("inf")
        self._changed: set[str] = set()

    def authenticate(
        self, charge_point_id: str, authorization: Any, *, secure: bool = False
    ) -> ChargerRecord:
        """The charger's record if it may connect, else `HandshakeRefused`; `secure`: the upgrade
        arrived over TLS (directly or through a trusted proxy, csms.proxies)."""
        password = self._basic_password(charge_point_id, authorization)
        if password is None:
            record = self._lookup_without_credentials(charge_point_id)
            if record is None or record.security_profile != 0:
                raise HandshakeRefused(
                    401, "unauthorized", "HTTP Basic credentials for this charge point required"
                )
            log.info("%s connects without credentials (security profile 0)", charge_point_id)
            return record
        try:
            chargers.validate_charge_point_id(charge_point_id)
        except ServiceError as exc:  # no charger has it, and none can be registered with it
            message = "no charge point has this id: 1 to 48 of A-Z a-z 0-9 . _ ~ -"
            raise HandshakeRefused(404, "unknown_charge_point", message) from exc
        record = self._lookup(charge_point_id)
        if record is None:
            if not self.auto_register:
                raise HandshakeRefused(
                    404, "unknown_charge_point", f"unknown charge point {charge_point_id!r}"
                )
            record = self._register_pending(charge_point_id, password)
        if record.security_profile == 0:  # identified by its URL: whatever it presents is not checked
            log.info("%s connects with credentials it need not present (security profile 0)", charge_point_id)
            return record
        if record.security_profile == 2 and not secure:
            raise HandshakeRefused(403, "tls_required", "this charge point must connect over TLS (wss://)")
        if not self._verify(record, password):
            raise HandshakeRefused(401, "unauthorized", "wrong credentials")
        return record

    @staticmethod
    def _basic_password(charge_point_id: str, authorization: Any) -> str | None:
        """The password of Basic credentials for this charger; None when none were presented (or
        were not Basic, or named another user)."""
        if (
            authorization is None
            or authorization.type != "basic"
            or not authorization.password
            or authorization.username != charge_point_id
        ):
            return None
        return authorization.password

    def _lookup_without_credentials(self, charge_point_id: str) -> ChargerRecord | None:
        """A charger's record for a handshake without credentials, where only a profile-0 charger
        gets in: from the directory while it is fresh, a query only for a charger changed since it
        was loaded (or when it could not be loaded), so made-up ids cost no query."""
        cached = self._records.get(charge_point_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        if time.monotonic() < self._complete_until and charge_point_id not in self._changed:
            return None
        try:
            chargers.validate_charge_point_id(charge_point_id)
        except ServiceError:
            return None
        return self._lookup(charge_point_id)

    def forget(self, charge_point_id: str) -> None:
        """Drop what is known of one charger: its next connection reads its record again."""
        with self._lock:
            self._generation += 1
            self._records.pop(charge_point_id, None)
            self._verified.pop(charge_point_id, None)
            self._changed.add(charge_point_id)
        self._unknown.pop(charge_point_id)

    def reload(self) -> int:
        """Drop every record and unknown id (many chargers changed, or changes may have been missed),
        then load the directory again."""
        with self._lock:
            self._generation += 1
            self._records = {}
            self._complete_until = -float("inf")
        self._unknown.clear()
        return self.load_directory()

    LOAD_ATTEMPTS = 3

    def load_directory(self) -> int:
        """(Re)load every charger's record in one query, in place of the previous directory; returns
        how many there are. A load that a change overtook is read again (at most `LOAD_ATTEMPTS`
        times; then the previous directory stays, less what changed, and lookups fill it in)."""
        with self._loading:
            for _ in range(self.LOAD_ATTEMPTS):
                generation = self._generation
                expires = time.monotonic() + self.ttl
                rows = db.session.execute(self._QUERY).all()
                db.session.rollback()
                records = {row.charge_point_id: (expires, self._record(row)) for row in rows}
                with self._lock:
                    if generation == self._generation:
                        self._records = records
                        self._complete_until, self._changed = expires, set()
                        self._verified = {cp: known for cp, known in self._verified.items() if cp in records}
                        return len(records)
            log.info("the charger directory kept changing while it loaded; looking chargers up one by one")
            return len(records)

    _QUERY = select(
        ChargePoint.id,
        ChargePoint.charge_point_id,
        ChargePoint.auth_key_hash,
        ChargePoint.registration_status,
        ChargePoint.security_profile,
    )

    @staticmethod
    def _record(row: Any) -> ChargerRecord:
        return ChargerRecord(
            row.id, row.charge_point_id, row.auth_key_hash, row.registration_status, row.security_profile
        )

    def _lookup(self, charge_point_id: str) -> ChargerRecord | None:
        now = time.monotonic()
        cached = self._records.get(charge_point_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        if cached is None and self._unknown.get(charge_point_id, False):
            return None
        generation = self._generation
        row = db.session.execute(self._QUERY.where(ChargePoint.charge_point_id == charge_point_id)).first()
        db.session.rollback()
        record = None if row is None else self._record(row)
        with self._lock:
            if generation != self._generation:  # a change came in while reading: answer, cache nothing
                return record
            if record is None:
                self._records.pop(charge_point_id, None)
                self._unknown.put(charge_point_id, True)
            else:
                self._records[charge_point_id] = (now + self.ttl, record)
        return record

    def _verify(self, record: ChargerRecord, password: str) -> bool:
        digest = hashlib.sha256(password.encode()).digest()
        known = self._verified.get(record.charge_point_id)
        if known is not None and known[0] == record.auth_key_hash and hmac.compare_digest(known[1], digest):
            return True
        if not off_the_hub(credentials.verify_key, password, record.auth_key_hash):
            return False
        with self._lock:
            self._verified[record.charge_point_id] = (record.auth_key_hash or "", digest)
        return True

    def _register_pending(self, charge_point_id: str, password: str) -> ChargerRecord:
        """Auto-registration: the charger is created Pending, with the key it presented; an operator
        accepts it before its BootNotification is answered Accepted."""
        try:
            chargers.register(charge_point_id, password, connectors=0, status=RegistrationStatus.PENDING)
        except ServiceError as exc:
            db.session.rollback()
            if exc.code != "charge_point_exists":  # a concurrent first connection registered it
                raise HandshakeRefused(401, "unauthorized", exc.message) from exc
        self.forget(charge_point_id)
        log.warning("auto-registered unknown charge point %s as Pending", charge_point_id)
        record = self._lookup(charge_point_id)
        assert record is not None
        return record


class Gateway:
    def __init__(self, app: Flask):
        config = app.config
        self.app = app
        self.config = config
        self.node_id = config["NODE_ID"]
        self.registry = ConnectionRegistry(self.node_id)
        self.node = Node(app, self.node_id, self.registry)
        self.id_tags = IdTagCache(ttl=config["AUTH_CACHE_SECONDS"])
        self.standings = StandingCache(ttl=config["AUTH_CACHE_SECONDS"])
        self.authenticator = ChargerAuthenticator(config["AUTH_CACHE_SECONDS"], config["AUTO_REGISTER"])
        self.boot_configuration = parse_boot_configuration(config["BOOT_CONFIGURATION"])
        self.handoff: Handoff = build_handoff(app)
        self.transaction_ids = GroupCommit(app, transactions.allocate_transaction_ids)
        self.keepalive = Keepalive(config["PING_INTERVAL"], self.registry.sessions)
        self.delivery = CommandDelivery(self)
        self._follow_changes(self.node.listener)

    def _follow_changes(self, listener: Listener) -> None:
        """Keep the charger directory and the idTag decisions true to changes made on any node."""
        listener.subscribe(chargers.CHANGED, self.authenticator.forget)
        listener.subscribe(chargers.MANY_CHANGED, lambda _count: self._reload_directory(everything=True))
        listener.subscribe(id_tags.CHANGED, self.id_tags.invalidate)
        listener.subscribe(id_tags.GROUP_CHANGED, lambda _count: self.id_tags.invalidate())
        listener.subscribe(id_tags.CHANGED, self.standings.forget_tag)
        listener.subscribe(wallet.BALANCE, self.standings.forget_owner)
        listener.on_resync(self._resync)

    def _resync(self) -> None:
        """Announcements may have been missed: nothing cached can be trusted."""
        self.id_tags.invalidate()
        self.standings.forget_tag()
        self._reload_directory(everything=True)

    # --- hand-off -------------------------------------------------------------------------------

    def hand_off(
        self, session: OcppSession, frames: list[dict], *, durable: bool, command: dict | None = None
    ) -> bool:
        exchange: dict[str, Any] = {
            "charge_point_id": session.charge_point_id,
            "node_id": self.node_id,
            "frames": frames,
        }
        if command is not None:
            exchange["command"] = command
        address = addresses.for_exchange(frames[0].get("action"), command=command is not None)
        return self.handoff.submit(address, exchange, durable=durable)

    def charger_left(self, session: OcppSession) -> None:
        """Load management hears of it (csms.services.load_management): the site's shares change."""
        trigger = {"charge_point_id": session.charge_point_id, "reason": "charger offline"}
        self.handoff.submit(addresses.REALLOCATE_SITES, trigger, durable=False)

    # --- CSMS-initiated calls -------------------------------------------------------------------

    def call(
        self,
        charge_point_id: str,
        action: str,
        payload: dict[str, Any],
        timeout: float | None = None,
        *,
        requested_by: int | None = None,
    ) -> dict[str, Any]:
        """Send `action` to a charger, on this node or on whichever node holds it (csms.cluster), and
        return its CALLRESULT payload.

        Raises `csms.ocpp.errors.OcppError` (invalid payload: nothing was sent), `ChargerOffline`,
        `CallTimeout` or `CallFailed`.
        """
        timeout = timeout or self.config["CALL_TIMEOUT"]
        command = {"requested_by": requested_by, "requested_at": datetime.now(UTC).isoformat()}
        session = self.registry.get(charge_point_id)
        if session is None:
            return self.node.route(charge_point_id, action, payload, timeout, command)
        return session.call(action, payload, timeout, command=command)

    # --- background work ----------------------------------------------------------------------------

    def start(self) -> None:
        """Load the charger directory and keep it fresh; join the cluster; send queued commands
        (csms.ocpp.command_delivery)."""
        self._running = threading.Event()
        self._running.set()
        self.transaction_ids.start()
        self.keepalive.start()
        self.node.start(with_bus=not is_embedded(self.app) and monkey.is_module_patched("socket"))
        self.delivery.start()
        self._reload_directory()
        threading.Thread(target=self._directory_loop, name="charger-directory", daemon=True).start()

    def _directory_loop(self) -> None:
        while self._running.is_set():
            time.sleep(max(self.authenticator.ttl / 2, 1.0))
            self._reload_directory()

    def _reload_directory(self, *, everything: bool = False) -> None:
        """Load the charger directory again; `everything`: forget every record and unknown id first."""
        with self.app.app_context():
            try:
                if everything:
                    self.authenticator.reload()
                else:
                    self.authenticator.load_directory()
            except Exception:  # the database may be down: lookups fall back to one query each
                log.exception("loading the charger directory failed")
            finally:
                db.session.remove()

    def stop(self) -> None:
        if getattr(self, "_running", None) is not None:
            self._running.clear()
        self.delivery.stop()
        self.keepalive.stop()
        self.transaction_ids.stop()
        self.node.stop()

    def after_accepted_boot(self, session: OcppSession) -> None:
        """Push the boot profile (e.g. MeterValueSampleInterval) once the charger is accepted, then
        its queued commands, in the background so the charger's own messages keep flowing meanwhile."""
        if self.boot_configuration:
            threading.Thread(target=self._configure_then_deliver, args=(session,), daemon=True).start()
        else:
            self.delivery.ready(session)

    def _configure_then_deliver(self, session: OcppSession) -> None:
        self._push_boot_configuration(session)
        if not session.closed:
            self.delivery.ready(session)

    def _push_boot_configuration(self, session: OcppSession) -> None:
        for key, value in self.boot_configuration:
            try:
                answer = session.call(
                    "ChangeConfiguration", {"key": key, "value": value}, self.config["CALL_TIMEOUT"]
                )
                log.info(
                    "%s: ChangeConfiguration %s=%s → %s",
                    session.charge_point_id,
                    key,
                    value,
                    answer.get("status"),
                )
            except Exception as exc:  # a charger that refuses or vanishes must not affect anything else
                log.warning("%s: ChangeConfiguration %s failed: %s", session.charge_point_id, key, exc)
                if session.closed:
                    return
