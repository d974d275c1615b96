"""The command queue: calls that wait in PostgreSQL for their charger, whoever asked for them.

Two kinds of caller leave a call here instead of sending it at once:
- an operator whose charger is offline and who asked for `"offline": "queue"` (`requested_by` set);
- the CSMS itself, from a worker that cannot reach any charger's WebSocket (a prepaid session ran
  out: RemoteStopTransaction). Those carry a `dedup_key`, so the message that caused them may be
  redelivered any number of times and the call is still queued once.

The node holding the charger sends them one at a time in `id` order (csms.ocpp.command_delivery).
A command is marked `sent` and committed before it is sent, by an update that only succeeds from
`queued`: it goes out at most once, even if two nodes race for it or the sender dies meanwhile.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from csms.models.base import Base, BigId, JsonDoc, utcnow


class CommandState(StrEnum):
    QUEUED = "queued"  # waiting for its charger
    SENT = "sent"  # claimed by the node holding the charger and on its way; never sent again
    ANSWERED = "answered"  # the charger's CALLRESULT is in `response`
    FAILED = "failed"  # CALLERROR, invalid answer, no answer, or the connection/node went away
    EXPIRED = "expired"  # its `expires_at` passed before it could go out
    CANCELLED = "cancelled"  # an operator withdrew it while it was queued


# Every allowed change of state; anything else is refused (csms.services.command_queue.transition).
TRANSITIONS: dict[CommandState, frozenset[CommandState]] = {
    CommandState.QUEUED: frozenset({CommandState.SENT, CommandState.EXPIRED, CommandState.CANCELLED}),
    CommandState.SENT: frozenset({CommandState.ANSWERED, CommandState.FAILED}),
    CommandState.ANSWERED: frozenset(),
    CommandState.FAILED: frozenset(),
    CommandState.EXPIRED: frozenset(),
    CommandState.CANCELLED: frozenset(),
}

# The timestamp each state stamps when entered (expiry is `expires_at` itself).
STAMPS: dict[CommandState, str] = {
    CommandState.SENT: "sent_at",
    CommandState.ANSWERED: "answered_at",
    CommandState.FAILED: "answered_at",
    CommandState.CANCELLED: "cancelled_at",
}


class QueuedCommand(Base):
    __tablename__ = "queued_commands"
    __table_args__ = (
        CheckConstraint(
            "state IN ('queued', 'sent', 'answered', 'failed', 'expired', 'cancelled')", name="state"
        ),
        # a charger's queue, in order: the only index delivery needs, whatever waits for others
        Index("ix_queued_commands_charger", "charge_point_id", "state", "id"),
        # the expiry sweep
        Index("ix_queued_commands_state_expires", "state", "expires_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    command_id: Mapped[str] = mapped_column(String(36), unique=True)  # the public id (a UUID)
    charge_point_id: Mapped[str] = mapped_column(String(48))
    action: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict] = mapped_column(JsonDoc)
    state: Mapped[str] = mapped_column(String(10), default=CommandState.QUEUED.value)
    requested_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    reason: Mapped[str | None] = mapped_column(String(100))
    dedup_key: Mapped[str | None] = mapped_column(String(100), unique=True)
    node_id: Mapped[str | None] = mapped_column(String(64))  # the node that sent it
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    answered_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    response: Mapped[dict | None] = mapped_column(JsonDoc)
    error_code: Mapped[str | None] = mapped_column(String(40))
    error_description: Mapped[str | None] = mapped_column(String(255))

    @property
    def error(self) -> dict[str, str | None] | None:
        """Why it failed (`code`: the charger's CALLERROR code, or Timeout, Disconnected, NodeLost…)."""
        if self.error_code is None:
            return None
        return {"code": self.error_code, "description": self.error_description}
