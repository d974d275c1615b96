"""Reading an exchange (a charger's CALL and the CSMS's answer, or the reverse) as handed off by the
gateway: see `csms.ocpp.gateway.Gateway.hand_off`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import dramatiq

from actors.notifications import emit_committed
from csms.services import bounds
from csms.services.clock import parse_utc


class Exchange:
    """One exchange, made storable (`csms.services.bounds`). `notes` collects what had to be
    clamped, replaced or dropped to apply it; they are logged once the exchange is committed."""

    def __init__(self, raw: dict[str, Any]):
        self.raw = raw
        self.notes: list[str] = bounds.clean_exchange(raw)
        self.charge_point_id: str = raw["charge_point_id"]
        self.frames: list[dict[str, Any]] = raw["frames"]
        self.first = self.frames[0]
        self.reply = self.frames[1] if len(self.frames) > 1 else None
        self.action: str | None = self.first.get("action")
        self.at = datetime.fromisoformat(self.first["at"])
        self.command: dict[str, Any] | None = raw.get("command")

    @property
    def request(self) -> dict[str, Any]:
        return self.first.get("payload") or {}

    @property
    def answered(self) -> bool:
        """True when the charger's CALL got a CALLRESULT (not a CALLERROR)."""
        return self.first["direction"] == "in" and self.reply is not None and self.reply["message_type"] == 3

    @property
    def response(self) -> dict[str, Any]:
        return (self.reply or {}).get("payload") or {}

    def time_of(self, value: str | None) -> datetime:
        """A charger timestamp as aware UTC, or the time the frame arrived when it sent none."""
        return parse_utc(value) if value else self.at


class Notifications:
    """Events an actor collects while it works, and messages to other actors, sent only after its
    transaction committed: no dashboard hears of a change that was rolled back, and no actor is asked
    to work on one. The events of a whole batch go out together, from the committing thread
    (`actors.notifications.emit_committed`)."""

    def __init__(self) -> None:
        self.pending: list[tuple[str, dict[str, Any], list[str], int | None]] = []
        self.messages: list[tuple[dramatiq.Actor, tuple]] = []

    def add(self, event: str, data: dict[str, Any], rooms: list[str], charger_id: int | None = None) -> None:
        """`charger_id`: see `actors.notifications.publish`."""
        self.pending.append((event, data, rooms, charger_id))

    def send_after(self, actor: dramatiq.Actor, *args: Any) -> None:
        self.messages.append((actor, args))

    def publish(self) -> None:
        emit_committed(self.pending)
        for actor, args in self.messages:
            actor.send(*args)
        self.pending.clear()
        self.messages.clear()
