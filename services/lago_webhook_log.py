"""The inbound Lago webhook log (``lago_webhook_events``) and its circuit breaker, for operators.

Listing reads the stored events (newest first, filtered by status or type); the breaker's state
is read as the webhook workflow leaves it, and closing it again is an operator's decision —
audited here (``lago_webhooks.breaker_reset``). Storing, processing and replaying live in
:mod:`activities.lago_webhooks` (docs/billing.md).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select

from activities.lago_webhooks import BreakerState, breaker_state, reset_breaker
from db.audit import write_audit
from db.billing_models import (
    WEBHOOK_FAILED,
    WEBHOOK_PENDING,
    WEBHOOK_PROCESSED,
    WEBHOOK_SKIPPED,
    LagoWebhookEvent,
)
from services.actor import Actor
from services.context import ServiceContext
from services.validation import invalid

STATUSES = (WEBHOOK_PENDING, WEBHOOK_PROCESSED, WEBHOOK_FAILED, WEBHOOK_SKIPPED)


class WebhookEventOut(BaseModel):
    id: int
    webhook_type: str
    status: str
    attempts: int
    replay_of: int | None
    created_at: datetime
    processed_at: datetime | None
    last_error: str | None
    # What the event concerns, for a list: the object's Lago id and kind, when the payload says.
    object_type: str | None = None
    object_id: str | None = None


def _concerns(payload: dict[str, Any]) -> tuple[str | None, str | None]:
    kind = payload.get("object_type")
    body = payload.get(kind) if isinstance(kind, str) else None
    if isinstance(body, dict):
        found = body.get("lago_id") or body.get("external_id") or body.get("number")
        return kind, str(found) if found is not None else None
    return kind if isinstance(kind, str) else None, None


async def list_events(
    ctx: ServiceContext,
    *,
    status: str | None = None,
    webhook_type: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[WebhookEventOut]:
    if status is not None and status not in STATUSES:
        raise invalid("status", f"one of {', '.join(STATUSES)}")
    query = select(LagoWebhookEvent).order_by(LagoWebhookEvent.id.desc())
    if status is not None:
        query = query.where(LagoWebhookEvent.status == status)
    if webhook_type:
        query = query.where(LagoWebhookEvent.webhook_type == webhook_type)
    async with ctx.sessions() as db:
        rows = (await db.scalars(query.limit(limit).offset(offset))).all()
    out = []
    for row in rows:
        kind, object_id = _concerns(row.payload or {})
        out.append(
            WebhookEventOut(
                id=row.id,
                webhook_type=row.webhook_type,
                status=row.status,
                attempts=row.attempts,
                replay_of=row.replay_of,
                created_at=row.created_at,
                processed_at=row.processed_at,
                last_error=row.last_error,
                object_type=kind,
                object_id=object_id,
            )
        )
    return out


async def breaker(ctx: ServiceContext) -> BreakerState:
    return await breaker_state(ctx.sessions)


async def reset(ctx: ServiceContext, actor: Actor) -> BreakerState:
    """Close the breaker: webhooks are processed again (those skipped meanwhile wait for a
    replay). Audited with the state it had."""
    before = await breaker_state(ctx.sessions)
    after = await reset_breaker(ctx.sessions, by=actor.id[:255])
    await write_audit(
        ctx.sessions,
        actor.id,
        "lago_webhooks.breaker_reset",
        subject=f"breaker:{after.name}",
        source=actor.source,
        details={
            "was_open": before.open,
            "consecutive_failures": before.consecutive_failures,
            "last_error": (before.last_error or "")[:500] or None,
        },
    )
    return after


async def audit_replay(ctx: ServiceContext, actor: Actor, event_id: int, replay_id: int) -> None:
    """An operator replayed a stored webhook: who, which event, which new row."""
    await write_audit(
        ctx.sessions,
        actor.id,
        "lago_webhooks.replayed",
        subject=f"lago_webhook:{event_id}",
        source=actor.source,
        details={"event_id": event_id, "replay_id": replay_id},
    )
