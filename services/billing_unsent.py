"""Unsent billing lines (issue #13): usage lines Lago refused for good, listed and sent again.

A session's ``send_usage_events`` that ends in a non-retryable refusal (no subscription, a
misconfigured metric, Lago said no) leaves its ``billing_events`` rows with ``sent_at`` NULL and
flags the session ``lago_unsent``; the activity also logs at ERROR and writes one operator
notification per session (``activities/lago.py``). Here an operator lists those rows and, once the
cause is fixed in Lago, sends them again: the same activity code, the same deterministic
``transaction_id`` per line (Lago deduplicates, so a resend never bills twice).

Unsent means: ``sent_at`` is NULL, the session is flagged ``lago_unsent`` or no longer running,
and it was not billed by a per-session invoice (those rows are never sent as usage).

Idle fees (``idle_fees``, ``activities/idle_fee.py``) are listed in the same list as their own
kind of line (``kind`` = ``idle_fee``): a fee with an amount, no ``sent_at``, and the operator
notification its send wrote when it was left unsent for good (a refusal, or no Lago customer) —
a fee whose workflow is still retrying is not listed. ``resend`` sends it again through the same
activity code (row lock + the Lago marker search: exactly once).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, exists, literal, or_, select, update
from temporalio.exceptions import ApplicationError

from activities.idle_fee import UNSENT_DEDUPE_PREFIX, IdleFeeActivities
from activities.lago import LagoBilling, SendUsageEventsInput
from db.audit import write_audit
from db.billing_models import Notification, SessionInvoice
from db.idle_fee_models import IdleFeeLine
from db.models import BillingEvent, ChargingSession
from domain.session_model import FINAL_PHASES
from services.actor import Actor
from services.context import ServiceContext
from services.errors import NotFound
from workflows.idle_fee_messages import SendIdleFeeInput

FLAG_LAGO_UNSENT = "lago_unsent"
IDLE_FEE = "idle_fee"
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


def _row(event: BillingEvent, last_error: str | None) -> dict[str, Any]:
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
        "last_error": last_error,
    }


def _idle_fee_row(line: IdleFeeLine, last_error: str | None) -> dict[str, Any]:
    return {
        "transaction_id": line.line_id,
        "session": line.session_workflow_id,
        "sequence": None,
        "kind": IDLE_FEE,
        "energy_wh": None,
        "amount_minor": line.amount_minor,
        "currency": line.currency,
        "customer": line.lago_customer_external_id,
        "occurred_at": line.ended_at.isoformat(),
        "last_error": last_error,
    }


def _last_error(data: dict[str, Any] | None) -> str | None:
    return str(data["reason"]) if data and data.get("reason") else None


async def list_unsent(
    ctx: ServiceContext, actor: Actor, *, session: str | None = None, limit: int = 500
) -> list[dict[str, Any]]:
    """Usage lines, then idle fees (``kind`` = ``idle_fee``); ``last_error`` is the reason the
    operator notification of the session's line holds (the last refusal for idle fees)."""
    usage_alert = Notification.dedupe_key == literal("billing.unsent:") + BillingEvent.workflow_id
    idle_alert = Notification.dedupe_key == literal(UNSENT_DEDUPE_PREFIX) + (
        IdleFeeLine.session_workflow_id
    )
    async with ctx.sessions() as db:
        usage = (
            await db.execute(
                select(BillingEvent, Notification.data)
                .join(ChargingSession, ChargingSession.workflow_id == BillingEvent.workflow_id)
                .outerjoin(Notification, usage_alert)
                .where(_unsent_filter(session))
                .order_by(BillingEvent.created_at, BillingEvent.workflow_id, BillingEvent.sequence)
                .limit(limit)
            )
        ).all()
        idle_filter = and_(IdleFeeLine.sent_at.is_(None), IdleFeeLine.amount_minor > 0)
        if session is not None:
            idle_filter = and_(idle_filter, IdleFeeLine.session_workflow_id == session)
        idle = (
            await db.execute(
                select(IdleFeeLine, Notification.data)
                .join(Notification, idle_alert)
                .where(idle_filter)
                .order_by(IdleFeeLine.created_at, IdleFeeLine.session_workflow_id)
                .limit(limit)
            )
        ).all()
    return [_row(e, _last_error(d)) for e, d in usage] + [
        _idle_fee_row(line, _last_error(d)) for line, d in idle
    ]


async def resend_unsent(
    ctx: ServiceContext, actor: Actor, *, session: str | None = None
) -> dict[str, Any]:
    """Send every unsent line again (of one session, or all); per session: what happened."""
    rows = await list_unsent(ctx, actor, session=session, limit=100_000)
    sessions = sorted({r["session"] for r in rows if r["kind"] != IDLE_FEE})
    idle_fees = sorted({r["session"] for r in rows if r["kind"] == IDLE_FEE})
    if session is not None and not rows:
        async with ctx.sessions() as db:
            known = await db.get(ChargingSession, session) is not None
            known = known or await db.get(IdleFeeLine, session) is not None
        if not known:
            raise NotFound(f"session {session}")
    billing = LagoBilling(ctx.settings, ctx.sessions, plan_code=ctx.settings.lago_plan_code)
    results: list[dict[str, Any]] = []
    for workflow_id in sessions:
        try:
            sent = await billing.send_usage_events(SendUsageEventsInput(workflow_id=workflow_id))
        except ApplicationError as exc:
            results.append({"session": workflow_id, "ok": False, "error": str(exc)})
            continue
        left = [
            r for r in await list_unsent(ctx, actor, session=workflow_id) if r["kind"] != IDLE_FEE
        ]
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
    if idle_fees:
        activities = IdleFeeActivities(ctx.settings, ctx.sessions)
        for workflow_id in idle_fees:
            results.append(await _resend_idle_fee(activities, workflow_id))
    await write_audit(
        ctx.sessions,
        actor.id,
        "billing.unsent_resent",
        subject=session,
        source=actor.source,
        details={"sessions": results},
    )
    return {"sessions": results, "lines": len(rows)}


async def _resend_idle_fee(activities: IdleFeeActivities, workflow_id: str) -> dict[str, Any]:
    """The idle fee through ``idle_fee_send``'s own code: the row lock and the Lago marker search
    keep it one invoice however often it is resent; a refusal alerts (and records the error)."""
    result: dict[str, Any] = {"session": workflow_id, "kind": IDLE_FEE}
    try:
        sent = await activities.send(SendIdleFeeInput(session_workflow_id=workflow_id))
    except ApplicationError as exc:
        return {**result, "ok": False, "error": str(exc)}
    if sent.lago_invoice_id is None:
        return {**result, "ok": False, "status": sent.status, "error": sent.status}
    return {
        **result,
        "ok": True,
        "status": sent.status,
        "lago_invoice_id": sent.lago_invoice_id,
        "invoice_number": sent.invoice_number,
    }


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
