"""Audit-log writes shared by the API, the CLI and the service layer: who, what, when (the
row's ``at``), from where.

"From where" is the caller's: in the API always ``api/client_address.py``'s answer, never a header
read here; in the CLI ``cli:<os user>@<host>``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from db.engine import SessionFactory
from db.models import AuditLog


def audit_row(
    actor: str,
    action: str,
    *,
    subject: str | None = None,
    source: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditLog:
    return AuditLog(
        actor=actor[:255],
        action=action[:64],
        subject=subject[:255] if subject else None,
        source=source[:255] if source else None,
        details=details or {},
    )


def add_audit(
    db: AsyncSession,
    actor: str,
    action: str,
    *,
    subject: str | None = None,
    source: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Add a row to the caller's transaction (it commits with the change it describes)."""
    db.add(audit_row(actor, action, subject=subject, source=source, details=details))


async def write_audit(
    sessions: SessionFactory,
    actor: str,
    action: str,
    *,
    subject: str | None = None,
    source: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Write one row in its own transaction (for events with no other database change)."""
    async with sessions() as db, db.begin():
        add_audit(db, actor, action, subject=subject, source=source, details=details)
