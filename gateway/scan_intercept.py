"""Scan-to-login / tap-to-add: what an armed charger does with the next tap.

- ``register`` (tap-to-add, armed by a signed-in operator): the next tap is intercepted — the
  arm is consumed, the idTag recorded, the charger answered ``Blocked`` so no charge starts.
- ``login`` (a driver's QR sign-in): the tap is authorized exactly as if nothing were armed; the
  arm only *records* it. An armed charger therefore never refuses anyone a charge, however often
  it is armed. Only a tap the local decision accepts (a known, active, mapped card; a card at its
  concurrent-session limit too) is recorded, and only on a charger that authenticates with a
  password — on a charger without one, anyone can send an Authorize under its name.

Both are one ``UPDATE … RETURNING`` over the charger's open arms (partial index
``ix_scan_arms_open``, ``FOR UPDATE SKIP LOCKED``), timed by the database clock like the API
that arms and exchanges, and audited (``scan.tap``) in the same transaction.
"""

from __future__ import annotations

from sqlalchemy import exists, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.card_sessions import card_lock_key
from db.identity_models import SCAN_LOGIN, SCAN_REGISTER, ScanArm
from db.models import AuditLog, Charger


async def _consume(
    session: AsyncSession, charge_box_id: str, id_tag: str, purpose: str
) -> str | None:
    conditions = [
        ScanArm.charge_box_id == charge_box_id,
        ScanArm.purpose == purpose,
        ScanArm.consumed_at.is_(None),
        ScanArm.expires_at > func.now(),
    ]
    if purpose == SCAN_LOGIN:
        conditions.append(
            exists().where(
                Charger.charge_box_id == charge_box_id, Charger.password_hash.is_not(None)
            )
        )
    open_arm = (
        select(ScanArm.id)
        .where(*conditions)
        .order_by(ScanArm.created_at.desc())
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    arm_id = await session.scalar(
        update(ScanArm)
        .where(ScanArm.id == open_arm)
        .values(consumed_at=func.now(), id_tag=id_tag)
        .returning(ScanArm.id)
    )
    if arm_id is None:
        return None
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
    return str(arm_id)


# The purposes of the charger's open arms, in the statement that takes the card's lock (so a tap
# on a charger nobody armed, nearly every tap, costs no scan_arms write at all). Arms are timed
# by the database clock, as in :func:`_consume`.
_LOCK_AND_ARMS = text(
    """
    SELECT pg_advisory_xact_lock(hashtext(:key)),
           ARRAY(SELECT DISTINCT purpose FROM scan_arms
                 WHERE charge_box_id = :cb AND consumed_at IS NULL AND expires_at > now())
    """
)


async def lock_card_and_read_arms(
    session: AsyncSession, id_tag: str, charge_box_id: str
) -> frozenset[str]:
    """Take the card's advisory lock (:func:`db.card_sessions.lock_card`) and return the
    purposes of the charger's open arms, in one round trip."""
    row = (
        await session.execute(_LOCK_AND_ARMS, {"key": card_lock_key(id_tag), "cb": charge_box_id})
    ).one()
    return frozenset(row[1] or ())


async def intercept_registration(session: AsyncSession, charge_box_id: str, id_tag: str) -> bool:
    """Consume the charger's open tap-to-add arm, if any, and commit: True when the tap is
    taken (answer it Blocked)."""
    return await _consume(session, charge_box_id, id_tag, SCAN_REGISTER) is not None


async def record_login_tap(session: AsyncSession, charge_box_id: str, id_tag: str) -> str | None:
    """Record an accepted tap on the charger's open QR sign-in arm, if any, and commit; the
    arm's id, or None. The caller answers the tap as it would have anyway."""
    return await _consume(session, charge_box_id, id_tag, SCAN_LOGIN)


__all__ = ["intercept_registration", "record_login_tap"]
