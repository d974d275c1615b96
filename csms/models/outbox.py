"""Messages for the broker that could not be published yet (RabbitMQ down, or embedded mode).

The relay publishes them oldest first and deletes each only after the broker confirmed it; the
Dramatiq message id is unique, so a message cannot be parked twice.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from csms.models.base import Base, BigId, utcnow


class OutboxMessage(Base):
    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    message_id: Mapped[str] = mapped_column(String(36), unique=True)
    queue_name: Mapped[str] = mapped_column(String(64))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
