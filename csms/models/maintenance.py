"""What came of the maintenance calls made to a charger: the last UnlockConnector, ClearCache,
TriggerMessage and ChangeAvailability each, with the charger's answer (or why there was none)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from csms.models.base import Base, JsonDoc


class ChargerOperation(Base):
    __tablename__ = "charger_operations"
    __table_args__ = (UniqueConstraint("charge_point_id", "action"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    charge_point_id: Mapped[int] = mapped_column(ForeignKey("charge_points.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(40))
    request: Mapped[dict | None] = mapped_column(JsonDoc)
    outcome: Mapped[str] = mapped_column(String(16))  # answered | call_error | timeout | offline | invalid
    status: Mapped[str | None] = mapped_column(String(32))  # the answer's status
    requested_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    at: Mapped[datetime]  # when it was sent
