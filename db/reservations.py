"""Reservation rows change status here, and only here: each change is one guarded ``UPDATE``
(``WHERE status IN (...)``) with its platform event, and the driver's notification when it
failed or expired, in the same transaction. The service layer (create, cancel) and the
workflow's activities (confirm, fail, expire, use) both call :func:`transition`.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.events import record_event
from db.models import Charger
from db.notifications import notify
from db.reservation_models import Reservation
from domain import events

EVENT_OF_STATUS = {
    "pending": events.RESERVATION_CREATED,
    "confirmed": events.RESERVATION_CONFIRMED,
    "cancelled": events.RESERVATION_CANCELLED,
    "failed": events.RESERVATION_FAILED,
    "expired": events.RESERVATION_EXPIRED,
    "used": events.RESERVATION_USED,
}
NOTIFY_STATUSES = {"failed": "could not be held", "expired": "expired: nobody started charging"}


def event_payload(r: Reservation) -> dict[str, Any]:
    """Flat, no idTag (``docs/reservations.md`` lists the fields)."""
    return {
        "reservation_id": r.id,
        "status": r.status,
        "charge_box_id": r.charge_box_id,
        "connector_id": r.connector_id,
        "starts_at": r.starts_at.isoformat(),
        "ends_at": r.ends_at.isoformat(),
        "reason": r.reason,
        "session_workflow_id": r.session_workflow_id,
    }


async def record_status_event(db: AsyncSession, r: Reservation) -> None:
    """The event of ``r``'s current status, and the driver's notification when it calls for
    one (idempotent by ``dedupe_key``)."""
    site_id = await db.scalar(
        select(Charger.site_id).where(Charger.charge_box_id == r.charge_box_id)
    )
    await record_event(
        db,
        EVENT_OF_STATUS[r.status],
        event_payload(r),
        subject=r.id,
        charge_box_id=r.charge_box_id,
        site_id=site_id,
        user_id=r.user_id,
    )
    if r.status in NOTIFY_STATUSES:
        await _notify(db, r)


async def _notify(db: AsyncSession, r: Reservation) -> None:
    when = r.starts_at.strftime("%Y-%m-%d %H:%M UTC")
    await notify(
        db,
        user_id=r.user_id,
        kind=f"reservation.{r.status}",
        dedupe_key=f"reservation:{r.id}:{r.status}",
        title=f"Your reservation on {r.charge_box_id} at {when} {NOTIFY_STATUSES[r.status]}",
        data={
            "reservation_id": r.id,
            "charge_box_id": r.charge_box_id,
            "connector_id": r.connector_id,
            "reason": r.reason,
        },
    )


async def transition(
    db: AsyncSession,
    reservation_id: str,
    to: str,
    *,
    allowed_from: Collection[str],
    **values: Any,
) -> Reservation | None:
    """Move the row to ``to`` when its status is one of ``allowed_from`` (with ``values``) and
    record the event; None (nothing changed) otherwise. Runs in the caller's transaction."""
    row = (
        await db.execute(
            update(Reservation)
            .where(Reservation.id == reservation_id, Reservation.status.in_(list(allowed_from)))
            .values(status=to, updated_at=func.now(), **values)
            .returning(Reservation)
            .execution_options(synchronize_session=False)
        )
    ).scalar_one_or_none()
    if row is not None:
        await record_status_event(db, row)
    return row


__all__ = ["EVENT_OF_STATUS", "event_payload", "record_status_event", "transition"]
