"""Scan-to-login / tap-to-add: while a scan is armed on a charger, its next tap is intercepted.

Called first on every Authorize. One indexed ``UPDATE … RETURNING`` on the open arms of this
charger (a partial index keeps it to a few rows): when an arm is open, it is consumed, the tapped
idTag is recorded on it and the tap is audited, all in one transaction; the charger is answered
``Blocked`` so no charge starts. The API turns the recorded tap into a sign-in or a new card.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.identity_models import ScanArm
from db.models import AuditLog


async def intercept_scan(
    session: AsyncSession, charge_box_id: str, id_tag: str, now: datetime
) -> str | None:
    """Consume the charger's open arm, if any, and commit; the arm's purpose, or None."""
    open_arm = (
        select(ScanArm.id)
        .where(
            ScanArm.charge_box_id == charge_box_id,
            ScanArm.consumed_at.is_(None),
            ScanArm.expires_at > now,
        )
        .order_by(ScanArm.created_at.desc())
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    row = (
        await session.execute(
            update(ScanArm)
            .where(ScanArm.id == open_arm)
            .values(consumed_at=now, id_tag=id_tag)
            .returning(ScanArm.id, ScanArm.purpose)
        )
    ).first()
    if row is None:
        return None
    arm_id, purpose = row
    session.add(
        AuditLog(
            actor=f"charger:{charge_box_id}",
            action="scan.tap",
            subject=id_tag,
            source="gateway",
            details={"scan_id": arm_id, "purpose": purpose},
        )
    )
    await session.commit()
    return str(purpose)


__all__ = ["intercept_scan"]
