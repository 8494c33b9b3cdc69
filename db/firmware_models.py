"""Tables for firmware and diagnostics (docs/firmware.md): uploaded images, one row per
``UpdateFirmware`` sent to a charger, campaigns, each charger's last reported states, and the
diagnostics files chargers upload.

Kept apart from :mod:`db.models` (same ``Base``). Schema changes only through Alembic
(``db/migrations/versions/0015_firmware.py``). Tokens in URLs are stored as SHA-256 digests only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from db.models import Base

# FirmwareStatusNotification statuses (OCPP 1.6) that end an update.
FIRMWARE_FINAL_OK = "Installed"
FIRMWARE_FINAL_FAILED = frozenset({"DownloadFailed", "InstallationFailed"})


class FirmwareFile(Base):
    __tablename__ = "firmware_files"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # The file name the charger downloads (safe characters only, see services/files.py).
    name: Mapped[str] = mapped_column(String(255))
    version: Mapped[str] = mapped_column(String(50))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    # Relative to settings.files_root.
    storage_path: Mapped[str] = mapped_column(String(512))
    uploaded_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class FirmwareUpdate(Base):
    """One ``UpdateFirmware`` to one charger. ``status``: the platform's side (requested → sent |
    rejected | failed); ``firmware_status``: what the charger reported since (Downloading …
    Installed | DownloadFailed | InstallationFailed)."""

    __tablename__ = "firmware_updates"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    charge_box_id: Mapped[str] = mapped_column(ForeignKey("chargers.charge_box_id"))
    firmware_id: Mapped[str] = mapped_column(ForeignKey("firmware_files.id"))
    campaign_id: Mapped[str | None] = mapped_column(String(36))
    token_sha256: Mapped[str | None] = mapped_column(String(64), unique=True)
    token_expires_at: Mapped[datetime | None] = mapped_column()
    retrieve_at: Mapped[datetime] = mapped_column()
    status: Mapped[str] = mapped_column(String(16), default="requested")
    error: Mapped[str | None] = mapped_column(Text)
    firmware_status: Mapped[str | None] = mapped_column(String(32))
    firmware_status_at: Mapped[datetime | None] = mapped_column()
    downloads: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    version_before: Mapped[str | None] = mapped_column(String(50))
    requested_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    sent_at: Mapped[datetime | None] = mapped_column()
    __table_args__ = (Index("ix_firmware_updates_charger", "charge_box_id", "created_at"),)


class FirmwareCampaign(Base):
    """A campaign's progress, written by its workflow after every step (the query answers the
    same, live)."""

    __tablename__ = "firmware_campaigns"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    firmware_id: Mapped[str] = mapped_column(ForeignKey("firmware_files.id"))
    workflow_id: Mapped[str] = mapped_column(String(255), unique=True)
    # running | completed | halted
    state: Mapped[str] = mapped_column(String(16), default="running")
    chargers: Mapped[list[str]] = mapped_column(JSONB)
    wave_size: Mapped[int] = mapped_column(Integer)
    pause_s: Mapped[int] = mapped_column(Integer)
    max_failures: Mapped[int] = mapped_column(Integer)
    wave_deadline_s: Mapped[int] = mapped_column(Integer)
    waves_done: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    succeeded: Mapped[list[str]] = mapped_column(JSONB, default=list)
    # chargeBoxId → reason
    failed: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    halted_reason: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())


class ChargerFirmwareState(Base):
    """The last FirmwareStatusNotification and DiagnosticsStatusNotification of a charger."""

    __tablename__ = "charger_firmware_states"
    charge_box_id: Mapped[str] = mapped_column(
        ForeignKey("chargers.charge_box_id"), primary_key=True
    )
    firmware_status: Mapped[str | None] = mapped_column(String(32))
    firmware_status_at: Mapped[datetime | None] = mapped_column()
    diagnostics_status: Mapped[str | None] = mapped_column(String(32))
    diagnostics_status_at: Mapped[datetime | None] = mapped_column()


class DiagnosticsUpload(Base):
    """One ``GetDiagnostics`` request and, once the charger sent it, its file."""

    __tablename__ = "diagnostics_uploads"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    charge_box_id: Mapped[str] = mapped_column(ForeignKey("chargers.charge_box_id"))
    token_sha256: Mapped[str | None] = mapped_column(String(64), unique=True)
    token_expires_at: Mapped[datetime | None] = mapped_column()
    # requested → sent → uploaded | failed
    status: Mapped[str] = mapped_column(String(16), default="requested")
    error: Mapped[str | None] = mapped_column(Text)
    # The name the charger answered GetDiagnostics with, then the one it uploaded.
    file_name: Mapped[str | None] = mapped_column(String(255))
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    storage_path: Mapped[str | None] = mapped_column(String(512))
    requested_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    uploaded_at: Mapped[datetime | None] = mapped_column()
    __table_args__ = (Index("ix_diagnostics_uploads_charger", "charge_box_id", "created_at"),)
