"""The local authorization list the CSMS wants on each charger (OCPP 1.6 §3.5.3, §5.15, §6.40).

`version` and `entries` are what the CSMS last decided the charger should hold; `charger_version`
is what the charger last confirmed (a SendLocalList it accepted, or its GetLocalListVersion).
`full_needed` says the next update must be Full: the charger's list is unknown or known to differ
(never sent, a failed or refused update, a version mismatch, a policy change).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from csms.models.base import Base, JsonDoc, utcnow


class LocalListPolicy(StrEnum):
    NONE = "none"  # no list: the charger asks the CSMS (an empty list is sent to clear an old one)
    ALL = "all"  # every tag
    PARENT = "parent"  # the tags of one group (`parent_id_tag`), and the group's own tag


class LocalList(Base):
    __tablename__ = "local_lists"
    __table_args__ = (
        CheckConstraint("policy IN ('none', 'all', 'parent')", name="policy"),
        CheckConstraint("policy <> 'parent' OR parent_id_tag IS NOT NULL", name="parent_named"),
    )

    charge_point_id: Mapped[int] = mapped_column(
        ForeignKey("charge_points.id", ondelete="CASCADE"), primary_key=True
    )
    policy: Mapped[str] = mapped_column(String(8), default=LocalListPolicy.NONE)
    parent_id_tag: Mapped[str | None] = mapped_column(String(20))
    # None until the charger says whether it has the LocalAuthListManagement profile.
    supported: Mapped[bool | None]
    version: Mapped[int] = mapped_column(default=0)
    entries: Mapped[list] = mapped_column(JsonDoc, default=list)  # OCPP AuthorizationData, by idTag
    charger_version: Mapped[int | None]
    full_needed: Mapped[bool] = mapped_column(default=True)
    last_sync_at: Mapped[datetime | None]
    last_sync_outcome: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
