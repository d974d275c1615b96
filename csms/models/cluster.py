"""The cluster's shared state in PostgreSQL: which web nodes are alive (a lease each renews) and which
node holds each charger's WebSocket.

A charger counts as connected when it has a `ChargerConnection` row whose node's lease has not run
out: a node killed outright stops counting when its lease lapses, with no one to clean up after it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from csms.models.base import Base, utcnow


class ClusterNode(Base):
    """A live (or lately live) web node: `queue` is its own RabbitMQ queue, where calls for the
    chargers it holds are sent; `expires_at` is its lease, renewed a few times per lease."""

    __tablename__ = "cluster_nodes"

    node_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    queue: Mapped[str | None] = mapped_column(String(200))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    renewed_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


class ChargerConnection(Base):
    """The one node holding a charger's connection. A newer connection (later `since`) replaces the
    row wherever it lands; `connection_id` lets the node that held an older one remove only its own."""

    __tablename__ = "charger_connections"
    __table_args__ = (Index("ix_charger_connections_node_id", "node_id"),)

    charge_point_id: Mapped[str] = mapped_column(String(48), primary_key=True)
    node_id: Mapped[str] = mapped_column(String(64))
    connection_id: Mapped[str] = mapped_column(String(32))
    since: Mapped[datetime]
    remote_address: Mapped[str | None] = mapped_column(String(64))
