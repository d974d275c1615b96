"""Records of what happened: the OCPP message log, the command audit and CMS events.

Each row carries the `event_id` the web process gave the event when it handed it off, and that id is
unique: a redelivered event finds its row already there and stores nothing twice.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from csms.models.base import Base, BigId, JsonDoc, utcnow


class OcppMessage(Base):
    """One OCPP-J frame, either direction. `charge_point_id` is the OCPP identity as a string so the
    log outlives a deleted charger and can be written without a lookup."""

    __tablename__ = "ocpp_messages"
    __table_args__ = (
        CheckConstraint("direction IN ('in', 'out')", name="direction"),
        CheckConstraint("message_type IN (2, 3, 4)", name="message_type"),
        Index("ix_ocpp_messages_cp_received", "charge_point_id", "received_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    charge_point_id: Mapped[str] = mapped_column(String(48))
    direction: Mapped[str] = mapped_column(String(3))
    message_type: Mapped[int] = mapped_column(SmallInteger)
    unique_id: Mapped[str] = mapped_column(String(36))
    action: Mapped[str | None] = mapped_column(String(40))
    payload: Mapped[dict | list | None] = mapped_column(JsonDoc)
    error_code: Mapped[str | None] = mapped_column(String(40))
    error_description: Mapped[str | None] = mapped_column(String(255))
    node_id: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime]
    stored_at: Mapped[datetime] = mapped_column(default=utcnow)


class CommandAudit(Base):
    """A CSMS-initiated call: who asked, what was sent, what the charger answered and how fast."""

    __tablename__ = "command_audit"
    __table_args__ = (
        CheckConstraint(
            "outcome IN ('answered', 'call_error', 'timeout', 'offline', 'invalid')", name="outcome"
        ),
        Index("ix_command_audit_cp_requested", "charge_point_id", "requested_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    charge_point_id: Mapped[str] = mapped_column(String(48))
    action: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict | None] = mapped_column(JsonDoc)
    unique_id: Mapped[str | None] = mapped_column(String(36))
    requested_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    requested_at: Mapped[datetime]
    outcome: Mapped[str] = mapped_column(String(16))
    response: Mapped[dict | None] = mapped_column(JsonDoc)
    error_code: Mapped[str | None] = mapped_column(String(40))
    error_description: Mapped[str | None] = mapped_column(String(255))
    latency_ms: Mapped[int | None]


class CmsEvent(Base):
    """A change an operator made: `cms.station.created`, `cms.point.updated`, `cms.tariff.deleted`…"""

    __tablename__ = "cms_events"
    __table_args__ = (Index("ix_cms_events_entity", "entity_type", "entity_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    type: Mapped[str] = mapped_column(String(64))
    entity_type: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict | None] = mapped_column(JsonDoc)
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
