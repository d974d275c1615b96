"""People and the tokens they authorize charging with."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from csms.models.base import Base, utcnow


class Role(StrEnum):
    CUSTOMER = "customer"
    OPERATOR = "operator"


class AccountPolicy(StrEnum):
    """How a customer pays for charging started with their tag: from the wallet only (prepaid, refused
    at Authorize below CSMS_MIN_BALANCE), or on account, what the wallet cannot cover becoming an open
    balance to invoice (postpaid)."""

    PREPAID = "prepaid"
    POSTPAID = "postpaid"


class IdTagStatus(StrEnum):
    """OCPP 1.6 AuthorizationStatus values an id tag can hold (ConcurrentTx is decided at run time)."""

    ACCEPTED = "Accepted"
    BLOCKED = "Blocked"
    EXPIRED = "Expired"
    INVALID = "Invalid"


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("role IN ('customer', 'operator')", name="role"),
        CheckConstraint("account_policy IN ('prepaid', 'postpaid')", name="account_policy"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default=Role.CUSTOMER)
    # Set by an operator: the account cannot log in, and its tokens stop working at once.
    disabled_at: Mapped[datetime | None]
    account_policy: Mapped[str] = mapped_column(String(16), default=AccountPolicy.PREPAID)
    # Smart charging's `priority` strategy serves the cars of higher priorities first.
    charging_priority: Mapped[int] = mapped_column(default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    id_tags: Mapped[list[IdTag]] = relationship(back_populates="user")


class IdTag(Base):
    """An RFID card or app token; `id_tag` is the OCPP IdToken (CiString20).

    `parent_id_tag` names the group the tag belongs to (another tag, OCPP 1.6 §3.5.4): the group's
    status applies to every member (csms.services.authorization). The user is the tag's owner.
    """

    __tablename__ = "id_tags"
    __table_args__ = (
        CheckConstraint("status IN ('Accepted', 'Blocked', 'Expired', 'Invalid')", name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    id_tag: Mapped[str] = mapped_column(String(20), unique=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    status: Mapped[str] = mapped_column(String(16), default=IdTagStatus.ACCEPTED)
    expiry_date: Mapped[datetime | None]
    parent_id_tag: Mapped[str | None] = mapped_column(String(20), index=True)
    note: Mapped[str | None] = mapped_column(String(255))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    user: Mapped[User | None] = relationship(back_populates="id_tags")
