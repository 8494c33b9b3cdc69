"""Tables for identity and access: armed scans (scan-to-login, tap-to-add) and the per-charger
QR secrets that prove presence at a charger.

Same ``Base`` as :mod:`db.models`; schema changes only through Alembic
(``db/migrations/versions/0005_identity_scan_arms.py``, ``0007_scan_secrets.py``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, func
from sqlalchemy.orm import Mapped, mapped_column

from db.models import Base

SCAN_LOGIN = "login"
SCAN_REGISTER = "register"


class ScanArm(Base):
    """A charger armed for a few seconds (``expires_at``): its next tap is recorded.

    The gateway consumes the arm and records the tapped ``id_tag`` (``consumed_at``, database
    clock); the API then turns it into a sign-in (``login``) or a registered card
    (``register``) for whoever holds the claim secret (only its SHA-256 is stored), once
    (``exchanged_at``) and only shortly after the tap. A ``register`` tap is answered Blocked;
    a ``login`` tap is authorized as if nothing were armed.
    """

    __tablename__ = "scan_arms"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    charge_box_id: Mapped[str] = mapped_column(String(255))
    purpose: Mapped[str] = mapped_column(String(16))
    claim_sha256: Mapped[str] = mapped_column(String(64))
    armed_by: Mapped[str] = mapped_column(String(255))
    armed_from: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column()
    consumed_at: Mapped[datetime | None] = mapped_column()
    id_tag: Mapped[str | None] = mapped_column(String(20))
    exchanged_at: Mapped[datetime | None] = mapped_column()
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    __table_args__ = (
        CheckConstraint("purpose IN ('login', 'register')", name="purpose"),
        # The gateway's lookup on every Authorize: open arms of one charger.
        Index(
            "ix_scan_arms_open",
            "charge_box_id",
            "expires_at",
            postgresql_where="consumed_at IS NULL",
        ),
    )


class ChargerScanSecret(Base):
    """The secret printed in (or displayed as) a charger's QR code; arming a QR sign-in must
    present it. Only its SHA-256 is kept (the secret is 256 random bits, so no slow hash is
    needed); rotating replaces the row and every earlier code stops working at once."""

    __tablename__ = "charger_scan_secrets"
    charge_box_id: Mapped[str] = mapped_column(
        ForeignKey("chargers.charge_box_id", ondelete="CASCADE"), primary_key=True
    )
    secret_sha256: Mapped[str] = mapped_column(String(64))
    rotated_at: Mapped[datetime] = mapped_column(server_default=func.now())
    rotated_by: Mapped[str] = mapped_column(String(255))


__all__ = ["SCAN_LOGIN", "SCAN_REGISTER", "ChargerScanSecret", "ScanArm"]
