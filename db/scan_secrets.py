"""Per-charger QR secrets: the proof of presence that arming a scan sign-in requires.

A charger's QR code (printed on it, or shown on its display) carries a random secret; only its
SHA-256 is stored (``charger_scan_secrets``). The API route that rotates it and the ``polaris scan
rotate-secret`` command both call :func:`rotate_scan_secret`; the QR sign-in route calls
:func:`check_scan_secret`.

:func:`check_scan_secret` answers an unknown charger, a charger without a secret and a wrong
secret identically, and does the same work for each: one indexed lookup, one hash of the
presented secret, one constant-time comparison (against a fixed stand-in when nothing is stored).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from urllib.parse import quote

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.identity_models import ChargerScanSecret
from db.models import AuditLog, Charger

SECRET_BYTES = 32
# Compared against when no secret is stored, so a miss costs what a hit costs.
_STAND_IN_DIGEST = hashlib.sha256(b"polaris: no scan secret").hexdigest()


class ScanSecretCheck(Enum):
    VALID = "valid"
    # Unknown charger, no secret, or a wrong one: callers must answer all three the same way.
    REFUSED = "refused"
    # The secret is right but the charger connects without a password: anyone could send its
    # taps, so a tap there proves nothing.
    UNAUTHENTICATED_CHARGER = "unauthenticated_charger"


class RotationRefused(Exception):
    """The charger is unknown (``reason="unknown_charger"``) or has no password
    (``reason="unauthenticated_charger"``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class RotatedSecret:
    charge_box_id: str
    secret: str
    qr_url: str
    rotated_at: datetime


def secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def qr_url(page_url: str, charge_box_id: str, secret: str) -> str:
    """The QR code's content. The secret travels in the fragment, which browsers never send to
    a server nor put in a Referer: the sign-in page's script reads it and posts it."""
    return f"{page_url}?c={quote(charge_box_id, safe='')}#k={secret}"


async def check_scan_secret(db: AsyncSession, charge_box_id: str, secret: str) -> ScanSecretCheck:
    presented = secret_digest(secret)
    row = (
        await db.execute(
            select(ChargerScanSecret.secret_sha256, Charger.password_hash.is_not(None))
            .join(Charger, Charger.charge_box_id == ChargerScanSecret.charge_box_id)
            .where(ChargerScanSecret.charge_box_id == charge_box_id)
        )
    ).first()
    stored, has_password = (row[0], bool(row[1])) if row is not None else (_STAND_IN_DIGEST, False)
    matches = hmac.compare_digest(stored, presented)
    if row is None or not matches:
        return ScanSecretCheck.REFUSED
    if not has_password:
        return ScanSecretCheck.UNAUTHENTICATED_CHARGER
    return ScanSecretCheck.VALID


async def rotate_scan_secret(
    db: AsyncSession, charge_box_id: str, *, actor: str, source: str | None, page_url: str
) -> RotatedSecret:
    """Mint a new secret for the charger (replacing any earlier one) and audit it, in the
    caller's transaction. The secret is returned once and never stored."""
    charger = await db.get(Charger, charge_box_id, with_for_update=True)
    if charger is None:
        raise RotationRefused("unknown_charger")
    if charger.password_hash is None:
        raise RotationRefused("unauthenticated_charger")
    secret = secrets.token_urlsafe(SECRET_BYTES)
    rotated_at = await db.scalar(
        insert(ChargerScanSecret)
        .values(
            charge_box_id=charge_box_id,
            secret_sha256=secret_digest(secret),
            rotated_at=func.now(),
            rotated_by=actor[:255],
        )
        .on_conflict_do_update(
            index_elements=[ChargerScanSecret.charge_box_id],
            set_={
                "secret_sha256": secret_digest(secret),
                "rotated_at": func.now(),
                "rotated_by": actor[:255],
            },
        )
        .returning(ChargerScanSecret.rotated_at)
    )
    assert rotated_at is not None
    db.add(
        AuditLog(
            actor=actor[:255],
            action="scan.secret_rotated",
            subject=charge_box_id,
            source=source[:255] if source else None,
            details={},
        )
    )
    return RotatedSecret(
        charge_box_id=charge_box_id,
        secret=secret,
        qr_url=qr_url(page_url, charge_box_id, secret),
        rotated_at=rotated_at,
    )


__all__ = [
    "RotatedSecret",
    "RotationRefused",
    "ScanSecretCheck",
    "check_scan_secret",
    "qr_url",
    "rotate_scan_secret",
    "secret_digest",
]
