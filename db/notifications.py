"""Writing notifications: :func:`notify`, the one idempotent insert every writer uses.

Call it inside the transaction of the change it tells about (an activity's, a route's), so a
notification exists exactly when the change was committed. ``dedupe_key`` names the fact
(``session.billed:<session>``, ``charger.offline:<charger>:<episode>``): a retried activity, a
replayed workflow or a second process writing the same fact adds nothing.

Rows added the first version's way (``Notification(user_public_id=...)`` through the ORM) are
normalised on insert (``db.billing_models``): ``operators`` goes to the operators' inbox,
anything else is looked up as a user id, public id or Lago customer id.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Protocol

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from db.billing_models import (
    AUDIENCE_OPERATORS,
    AUDIENCE_USER,
    Notification,
    user_of_recipient_sql,
)

# What a notification is about (``kind``): the catalogue lives in docs/notifications.md.
CARD_LOST = "card.lost"
SESSION_BILLED = "session.billed"
RESERVATION_EXPIRED = "reservation.expired"
RESERVATION_FAILED = "reservation.failed"
CHARGER_OFFLINE = "charger.offline"
WEBHOOK_ENDPOINT_DISABLED = "webhook_endpoint.disabled"
INVOICE_CREATED = "invoice.created"
KINDS = frozenset(
    {
        CARD_LOST,
        SESSION_BILLED,
        RESERVATION_EXPIRED,
        RESERVATION_FAILED,
        CHARGER_OFFLINE,
        WEBHOOK_ENDPOINT_DISABLED,
        INVOICE_CREATED,
    }
)
TITLE_MAX = 300


async def notify(
    db: AsyncSession | AsyncConnection,
    *,
    user_id: str | None = None,
    audience: Literal["user", "operators"] | None = None,
    kind: str,
    dedupe_key: str,
    title: str,
    data: dict[str, Any] | None = None,
) -> int | None:
    """Add a notification for a driver (``user_id``) or for the operators
    (``audience="operators"``) unless ``dedupe_key`` exists; returns the new id, or None when
    it was already there. ``data``: a flat JSON object of ids and numbers, never secrets or raw
    idTags."""
    if (user_id is None) == (audience != AUDIENCE_OPERATORS):
        raise ValueError("give either user_id or audience='operators'")
    if kind not in KINDS:
        raise ValueError(f"unknown notification kind {kind!r} (add it to db/notifications.py)")
    statement = (
        insert(Notification)
        .values(
            audience=AUDIENCE_OPERATORS if user_id is None else AUDIENCE_USER,
            user_id=user_id,
            kind=kind,
            dedupe_key=dedupe_key[:300],
            title=title[:TITLE_MAX],
            data=data or {},
        )
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(Notification.id)
    )
    new_id: int | None = (await db.execute(statement)).scalar_one_or_none()
    return new_id


async def user_of_recipient(db: AsyncSession | AsyncConnection, recipient: str) -> str | None:
    found: str | None = (await db.execute(user_of_recipient_sql(recipient))).scalar_one_or_none()
    return found


class BilledSession(Protocol):
    workflow_id: str
    charge_box_id: str
    energy_wh: int
    cost_minor: int
    currency: str | None
    stopped_at: datetime | None


async def notify_session_billed(
    db: AsyncSession | AsyncConnection, user_id: str, session: BilledSession
) -> int | None:
    """Tell the driver what their finished session cost (once per session)."""
    amount = f"{session.cost_minor / 100:.2f} {session.currency}" if session.currency else ""
    title = f"Charging session at {session.charge_box_id} billed"
    return await notify(
        db,
        user_id=user_id,
        kind=SESSION_BILLED,
        dedupe_key=f"{SESSION_BILLED}:{session.workflow_id}",
        title=f"{title}: {amount}" if amount else title,
        data={
            "session_id": session.workflow_id,
            "charge_box_id": session.charge_box_id,
            "energy_wh": session.energy_wh,
            "cost_minor": session.cost_minor,
            "currency": session.currency,
            "stopped_at": session.stopped_at.isoformat() if session.stopped_at else None,
        },
    )


__all__ = [
    "CARD_LOST",
    "CHARGER_OFFLINE",
    "INVOICE_CREATED",
    "KINDS",
    "RESERVATION_EXPIRED",
    "SESSION_BILLED",
    "WEBHOOK_ENDPOINT_DISABLED",
    "notify",
    "notify_session_billed",
    "user_of_recipient",
]
