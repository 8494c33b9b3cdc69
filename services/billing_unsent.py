"""Unsent billing lines (issue #13): usage lines Lago refused for good, listed and sent again.

A session's ``send_usage_events`` that ends in a non-retryable refusal (no subscription, a
misconfigured metric, Lago said no) leaves its ``billing_events`` rows with ``sent_at`` NULL and
flags the session ``lago_unsent``; the activity also logs at ERROR and writes one operator
notification per session (``activities/lago.py``). Here an operator lists those rows and, once the
cause is fixed in Lago, sends them again: the same activity code, the same deterministic
``transaction_id`` per line (Lago deduplicates, so a resend never bills twice).

Unsent means: ``sent_at`` is NULL, the session is flagged ``lago_unsent`` or no longer running,
and it was not billed by a per-session invoice (those rows are never sent as usage).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, exists, or_, select, update
from temporalio.exceptions import ApplicationError

from activities.lago import LagoBilling, SendUsageEventsInput
from db.audit import write_audit
from db.billing_models import SessionInvoice
from db.models import BillingEvent, ChargingSession
from domain.session_model import FINAL_PHASES
from services.actor import Actor
from services.context import ServiceContext
from services.errors import NotFound

FLAG_LAGO_UNSENT = "lago_unsent"
OPERATOR_KIND = "billing.unsent"
# Operator notifications are not a driver's: they go to this pseudo user id.
OPERATORS = "operators"


def _unsent_filter(session: str | None) -> Any:
    flagged = ChargingSession.flags.contains([FLAG_LAGO_UNSENT])
    finished = ChargingSession.state.in_([str(p) for p in FINAL_PHASES])
    invoiced = exists().where(SessionInvoice.workflow_id == BillingEvent.workflow_id)
    condition = and_(
        BillingEvent.sent_at.is_(None),
        or_(flagged, finished),
        ~invoiced,
    )
    if session is not None:
        condition = and_(condition, BillingEvent.workflow_id == session)
    return condition


def _row(event: BillingEvent) -> dict[str, Any]:
    return {
        "transaction_id": event.transaction_id,
        "session": event.workflow_id,
        "sequence": event.sequence,
        "kind": event.kind,
        "energy_wh": event.energy_wh,
        "amount_minor": event.amount_minor,
        "currency": event.currency,
        "customer": event.lago_customer_external_id,
        "occurred_at": event.occurred_at.isoformat(),
    }


async def list_unsent(
    ctx: ServiceContext, actor: Actor, *, session: str | None = None, limit: int = 500
) -> list[dict[str, Any]]:
    async with ctx.sessions() as db:
        rows = await db.scalars(
            select(BillingEvent)
            .join(ChargingSession, ChargingSession.workflow_id == BillingEvent.workflow_id)
            .where(_unsent_filter(session))
            .order_by(BillingEvent.created_at, BillingEvent.workflow_id, BillingEvent.sequence)
            .limit(limit)
        )
        return [_row(r) for r in rows]


async def resend_unsent(
    ctx: ServiceContext, actor: Actor, *, session: str | None = None
) -> dict[str, Any]:
    """Send every unsent line again (of one session, or all); per session: what happened."""
    rows = await list_unsent(ctx, actor, session=session, limit=100_000)
    sessions = sorted({r["session"] for r in rows})
    if session is not None and not sessions:
        async with ctx.sessions() as db:
            if await db.get(ChargingSession, session) is None:
                raise NotFound(f"session {session}")
    billing = LagoBilling(ctx.settings, ctx.sessions, plan_code=ctx.settings.lago_plan_code)
    results: list[dict[str, Any]] = []
    for workflow_id in sessions:
        try:
            sent = await billing.send_usage_events(SendUsageEventsInput(workflow_id=workflow_id))
        except ApplicationError as exc:
            results.append({"session": workflow_id, "ok": False, "error": str(exc)})
            continue
        left = await list_unsent(ctx, actor, session=workflow_id)
        if not left:
            await _clear_flag(ctx, workflow_id)
        results.append(
            {
                "session": workflow_id,
                "ok": not left,
                "sent": sent.sent,
                "duplicates": sent.duplicates,
                "left": len(left),
            }
        )
    await write_audit(
        ctx.sessions,
        actor.id,
        "billing.unsent_resent",
        subject=session,
        source=actor.source,
        details={"sessions": results},
    )
    return {"sessions": results, "lines": len(rows)}


async def _clear_flag(ctx: ServiceContext, workflow_id: str) -> None:
    async with ctx.sessions() as db, db.begin():
        current = await db.get(ChargingSession, workflow_id)
        if current is None or FLAG_LAGO_UNSENT not in (current.flags or []):
            return
        await db.execute(
            update(ChargingSession)
            .where(ChargingSession.workflow_id == workflow_id)
            .values(flags=[f for f in current.flags if f != FLAG_LAGO_UNSENT])
        )


__all__ = ["OPERATORS", "OPERATOR_KIND", "list_unsent", "resend_unsent"]
