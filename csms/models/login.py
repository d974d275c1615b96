"""Failed logins counted for the whole cluster (csms.api.login_limiter.SharedLoginLimiter).

A row counts the failures of one sender of one account, or of one sender for every account, within
a window that ends at `expires_at`; the key is a SHA-256 of what it counts, so the table holds no
email address anyone mistyped. Rows come only from failed logins, each of which paid a password
check, and go `window` seconds after their last failure: the table stays as small as the number of
password checks a window holds.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from csms.models.base import Base


class LoginFailure(Base):
    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_expires_at", "expires_at"),)

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int]
    last_failure_at: Mapped[datetime]
    expires_at: Mapped[datetime]
