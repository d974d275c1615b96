"""Firmware updates and diagnostics uploads (OCPP 1.6 §4.4, §4.5, §5.9, §5.19): jobs sent to many
chargers, each charger's progress a row of its own, and the files the CSMS serves or receives.

Each target's `status` follows the OCPP status notifications through one table of allowed changes
(`FIRMWARE_TRANSITIONS`, `DIAGNOSTICS_TRANSITIONS`): notifications can arrive late or twice and the
workers apply them in any order, so a status a target has moved past is never taken back.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from csms.models.base import Base, utcnow

# --- firmware ---------------------------------------------------------------------------------------

# CSMS-side: `Pending` (UpdateFirmware waiting to go out or on its way), `Scheduled` (the charger
# acknowledged it and will fetch the file at retrieveDate), `Failed` (it never reached the charger).
# Then the charger's own FirmwareStatus values.
FIRMWARE_STATUSES = (
    "Pending",
    "Scheduled",
    "Failed",
    "Downloading",
    "Downloaded",
    "DownloadFailed",
    "Installing",
    "Installed",
    "InstallationFailed",
)
_AFTER_DOWNLOAD = {"Installing", "Installed", "InstallationFailed"}
_PROGRESS = {"Downloading", "Downloaded", "DownloadFailed"} | _AFTER_DOWNLOAD
FIRMWARE_TRANSITIONS: dict[str, frozenset[str]] = {
    # a notification may be applied before the answer to UpdateFirmware that preceded it
    "Pending": frozenset({"Scheduled", "Failed"} | _PROGRESS),
    "Scheduled": frozenset(_PROGRESS),
    "Downloading": frozenset({"Downloaded", "DownloadFailed"} | _AFTER_DOWNLOAD),
    "DownloadFailed": frozenset({"Downloading", "Downloaded"} | _AFTER_DOWNLOAD),  # the charger retries
    "Downloaded": frozenset(_AFTER_DOWNLOAD),
    "Installing": frozenset({"Installed", "InstallationFailed"}),
    "Installed": frozenset(),
    "InstallationFailed": frozenset(),
    "Failed": frozenset(),
}
FIRMWARE_OPEN = tuple(status for status, nexts in FIRMWARE_TRANSITIONS.items() if nexts)


class StoredFile(Base):
    """A file kept in the database, so every web node can serve it: firmware an operator uploaded
    (served to chargers) or a diagnostics file a charger uploaded (downloaded by operators). `token`
    is the unguessable part of its URL."""

    __tablename__ = "stored_files"
    __table_args__ = (CheckConstraint("kind IN ('firmware', 'diagnostics')", name="kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(12))
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    data: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    uploaded_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FirmwareUpdate(Base):
    __tablename__ = "firmware_updates"

    id: Mapped[int] = mapped_column(primary_key=True)
    location: Mapped[str] = mapped_column(String(512))
    file_id: Mapped[int | None] = mapped_column(ForeignKey("stored_files.id", ondelete="SET NULL"))
    retrieve_date: Mapped[datetime]
    retries: Mapped[int | None]
    retry_interval: Mapped[int | None]
    requested_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    targets: Mapped[list[FirmwareTarget]] = relationship(
        back_populates="update", order_by="FirmwareTarget.id", cascade="all, delete-orphan", lazy="selectin"
    )


class FirmwareTarget(Base):
    __tablename__ = "firmware_targets"
    __table_args__ = (
        CheckConstraint("status IN (" + ", ".join(f"'{s}'" for s in FIRMWARE_STATUSES) + ")", name="status"),
        Index("ix_firmware_targets_charger_status", "charge_point_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    update_id: Mapped[int] = mapped_column(ForeignKey("firmware_updates.id", ondelete="CASCADE"), index=True)
    charge_point_id: Mapped[str] = mapped_column(String(48))
    status: Mapped[str] = mapped_column(String(20), default="Pending")
    command_id: Mapped[str | None] = mapped_column(String(36), unique=True)  # its queued UpdateFirmware
    error: Mapped[str | None] = mapped_column(String(255))
    status_at: Mapped[datetime] = mapped_column(default=utcnow)
    firmware_version: Mapped[str | None] = mapped_column(String(50))  # reported at the boot after it

    update: Mapped[FirmwareUpdate] = relationship(back_populates="targets")


# --- diagnostics ------------------------------------------------------------------------------------

# CSMS-side: `Pending` (GetDiagnostics waiting or on its way), `Accepted` (the charger named the
# file it will upload), `NoFile` (it has no diagnostics: GetDiagnostics.conf without fileName),
# `Failed` (never reached the charger). Then the charger's DiagnosticsStatus values.
DIAGNOSTICS_STATUSES = ("Pending", "Accepted", "NoFile", "Failed", "Uploading", "Uploaded", "UploadFailed")
_UPLOAD = {"Uploading", "Uploaded", "UploadFailed"}
DIAGNOSTICS_TRANSITIONS: dict[str, frozenset[str]] = {
    "Pending": frozenset({"Accepted", "NoFile", "Failed"} | _UPLOAD),
    "Accepted": frozenset(_UPLOAD),
    "Uploading": frozenset({"Uploaded", "UploadFailed"}),
    "UploadFailed": frozenset({"Uploading", "Uploaded"}),  # the charger retries
    "Uploaded": frozenset(),
    "NoFile": frozenset(),
    "Failed": frozenset(),
}
DIAGNOSTICS_OPEN = tuple(status for status, nexts in DIAGNOSTICS_TRANSITIONS.items() if nexts)


class DiagnosticsRequest(Base):
    __tablename__ = "diagnostics_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    start_time: Mapped[datetime | None]
    stop_time: Mapped[datetime | None]
    retries: Mapped[int | None]
    retry_interval: Mapped[int | None]
    requested_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    targets: Mapped[list[DiagnosticsTarget]] = relationship(
        back_populates="request",
        order_by="DiagnosticsTarget.id",
        cascade="all, delete-orphan",
        lazy="selectin",
    )


class DiagnosticsTarget(Base):
    __tablename__ = "diagnostics_targets"
    __table_args__ = (
        CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in DIAGNOSTICS_STATUSES) + ")", name="status"
        ),
        Index("ix_diagnostics_targets_charger_status", "charge_point_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(
        ForeignKey("diagnostics_requests.id", ondelete="CASCADE"), index=True
    )
    charge_point_id: Mapped[str] = mapped_column(String(48))
    status: Mapped[str] = mapped_column(String(20), default="Pending")
    command_id: Mapped[str | None] = mapped_column(String(36), unique=True)  # its queued GetDiagnostics
    upload_token: Mapped[str] = mapped_column(String(64), unique=True)  # the upload URL's secret
    file_name: Mapped[str | None] = mapped_column(String(255))  # as the charger announced it
    file_id: Mapped[int | None] = mapped_column(ForeignKey("stored_files.id", ondelete="SET NULL"))
    error: Mapped[str | None] = mapped_column(String(255))
    status_at: Mapped[datetime] = mapped_column(default=utcnow)

    request: Mapped[DiagnosticsRequest] = relationship(back_populates="targets")
    file: Mapped[StoredFile | None] = relationship(lazy="selectin")
