"""Pending taps and remote-start intents: which workflow a StartTransaction belongs to."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import session_intents
from workflows.messages import AuthorizationStatus


@dataclass(frozen=True, slots=True)
class Intent:
    id: int
    workflow_id: str
    origin: str
    auth_status: str


async def remember(
    session: AsyncSession,
    *,
    workflow_id: str,
    charge_box_id: str,
    id_tag: str,
    origin: str,
    auth_status: AuthorizationStatus,
    now: datetime,
    ttl: timedelta,
    connector_id: int | None = None,
) -> None:
    await session.execute(
        insert(session_intents).values(
            workflow_id=workflow_id,
            charge_box_id=charge_box_id,
            id_tag=id_tag,
            connector_id=connector_id,
            origin=origin,
            auth_status=auth_status,
            created_at=now,
            expires_at=now + ttl,
        )
    )


async def set_status(
    session: AsyncSession,
    *,
    workflow_id: str,
    charge_box_id: str,
    id_tag: str,
    auth_status: AuthorizationStatus,
) -> None:
    """The workflow's answer tightened a remembered tap's status (before the charger heard it)."""
    t = session_intents
    await session.execute(
        update(t)
        .where(
            # The open-intent index finds the charger's and card's rows; the id picks the tap.
            t.c.charge_box_id == charge_box_id,
            t.c.id_tag == id_tag,
            t.c.consumed_at.is_(None),
            t.c.workflow_id == workflow_id,
        )
        .values(auth_status=auth_status)
    )


async def take(
    session: AsyncSession,
    *,
    charge_box_id: str,
    id_tag: str,
    connector_id: int,
    now: datetime,
    transaction_id: int | None = None,
) -> Intent | None:
    """Consume the newest live intent for this card at this charger (inside the start's txn)."""
    t = session_intents
    row = (
        await session.execute(
            select(t.c.id, t.c.workflow_id, t.c.origin, t.c.auth_status)
            .where(
                t.c.charge_box_id == charge_box_id,
                t.c.id_tag == id_tag,
                t.c.consumed_at.is_(None),
                t.c.expires_at > now,
                (t.c.connector_id.is_(None)) | (t.c.connector_id == connector_id),
            )
            .order_by(t.c.created_at.desc(), t.c.id.desc())
            .limit(1)
            # Waits (never skips) while a late refusal updates the row (gateway/late_refusal.py).
            .with_for_update()
        )
    ).first()
    if row is None:
        return None
    await session.execute(
        update(t).where(t.c.id == row.id).values(consumed_at=now, transaction_id=transaction_id)
    )
    return Intent(
        id=row.id, workflow_id=row.workflow_id, origin=row.origin, auth_status=row.auth_status
    )
