"""Inbound Lago webhooks: store, process (through LagoWebhookWorkflow), replay, circuit breaker.

Lifecycle of a ``lago_webhook_events`` row::

    stored ──► pending ──► processed
        │          └─────► failed      (processing failed for good; counts toward the breaker)
        └────────► skipped             (stored while the breaker was open; replay it later)

The breaker opens after ``threshold`` consecutive processing failures and stays open until an
operator calls :func:`reset_breaker`; a success while closed resets the count. A replay
(:func:`replay_webhook_event`) inserts a *new* row (``replay_of`` = the replayed row) and starts a
new run; the replayed row is never changed.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError

from activities.lago_invoices import invoice_key
from db.billing_models import (
    BREAKER_LAGO_WEBHOOKS,
    WEBHOOK_FAILED,
    WEBHOOK_PENDING,
    WEBHOOK_PROCESSED,
    WEBHOOK_SKIPPED,
    CircuitBreaker,
    LagoWebhookEvent,
    SessionInvoice,
)
from db.engine import SessionFactory
from db.models import BillingEvent
from db.notifications import INVOICE_CREATED, notify, user_of_recipient
from workflows.lago_webhook import (
    ACTIVITY_FAIL_LAGO_WEBHOOK,
    ACTIVITY_PROCESS_LAGO_WEBHOOK,
    LAGO_WEBHOOK_WORKFLOW,
    MALFORMED_LAGO_WEBHOOK,
    FailLagoWebhookInput,
    LagoWebhookInput,
    ProcessLagoWebhookInput,
    ProcessLagoWebhookResult,
    lago_webhook_workflow_id,
)

DEFAULT_BREAKER_THRESHOLD = 5
_MARKER = re.compile(r"\[polaris:" + re.escape(invoice_key("")) + r"(?P<workflow_id>[^\]]+)\]")

__all__ = [
    "DEFAULT_BREAKER_THRESHOLD",
    "BreakerState",
    "LagoWebhookActivities",
    "StoredWebhook",
    "breaker_state",
    "replay_webhook_event",
    "reset_breaker",
    "start_webhook_workflow",
    "store_webhook_event",
]


class MalformedWebhook(Exception):
    pass


@dataclass(frozen=True)
class StoredWebhook:
    id: int
    status: str
    duplicate: bool


class BreakerState(BaseModel):
    name: str
    open: bool
    consecutive_failures: int
    opened_at: datetime | None = None
    last_error: str | None = None
    reset_at: datetime | None = None
    reset_by: str | None = None


# -- storing, starting, replaying (called by the API) ----------------------------------------


async def store_webhook_event(
    sessions: SessionFactory,
    *,
    unique_key: str,
    webhook_type: str,
    payload: dict[str, Any],
    body_sha256: str,
) -> StoredWebhook:
    """Insert the webhook once per signed body (``body_sha256``) and once per unique key:
    ``pending``, or ``skipped`` while the breaker is open. A redelivery, or a replay of a
    captured body under a new key, answers the existing row with ``duplicate=True``."""
    async with sessions() as db, db.begin():
        status = WEBHOOK_SKIPPED if await _breaker_open(db) else WEBHOOK_PENDING
        new_id = await db.scalar(
            insert(LagoWebhookEvent)
            .values(
                unique_key=unique_key,
                body_sha256=body_sha256,
                webhook_type=webhook_type,
                payload=payload,
                status=status,
                attempts=0,
            )
            # Either unique index (key or body) makes it a duplicate.
            .on_conflict_do_nothing()
            .returning(LagoWebhookEvent.id)
        )
        if new_id is not None:
            return StoredWebhook(id=new_id, status=status, duplicate=False)
        existing = (
            await db.scalars(
                select(LagoWebhookEvent)
                .where(
                    or_(
                        LagoWebhookEvent.body_sha256 == body_sha256,
                        LagoWebhookEvent.unique_key == unique_key,
                    ),
                    LagoWebhookEvent.replay_of.is_(None),
                )
                .order_by(LagoWebhookEvent.id)
                .limit(1)
            )
        ).one()
        return StoredWebhook(id=existing.id, status=existing.status, duplicate=True)


async def start_webhook_workflow(client: Client, event_id: int, *, task_queue: str) -> None:
    """Start the row's run; a run that exists already (a redelivery) is left alone."""
    with contextlib.suppress(WorkflowAlreadyStartedError):
        await client.start_workflow(
            LAGO_WEBHOOK_WORKFLOW,
            LagoWebhookInput(event_id=event_id),
            id=lago_webhook_workflow_id(event_id),
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )


async def replay_webhook_event(
    sessions: SessionFactory, client: Client, event_id: int, *, task_queue: str
) -> StoredWebhook:
    """An operator's replay: a new row pointing at ``event_id`` and a new run.

    Raises ``LookupError`` when there is no such event. Replays run even while the breaker is
    open (the operator asked for it); their failures still count.
    """
    async with sessions() as db, db.begin():
        original = await db.get(LagoWebhookEvent, event_id)
        if original is None:
            raise LookupError(f"no Lago webhook event {event_id}")
        replay = LagoWebhookEvent(
            unique_key=original.unique_key,
            body_sha256=original.body_sha256,
            webhook_type=original.webhook_type,
            payload=original.payload,
            status=WEBHOOK_PENDING,
            attempts=0,
            replay_of=original.id,
        )
        db.add(replay)
        await db.flush()
        stored = StoredWebhook(id=replay.id, status=WEBHOOK_PENDING, duplicate=False)
    await start_webhook_workflow(client, stored.id, task_queue=task_queue)
    return stored


# -- the breaker ------------------------------------------------------------------------------


async def breaker_state(sessions: SessionFactory) -> BreakerState:
    async with sessions() as db:
        row = await db.get(CircuitBreaker, BREAKER_LAGO_WEBHOOKS)
    if row is None:
        return BreakerState(name=BREAKER_LAGO_WEBHOOKS, open=False, consecutive_failures=0)
    return _state(row)


async def reset_breaker(sessions: SessionFactory, *, by: str) -> BreakerState:
    """Close the breaker (an operator's decision) and start counting from zero."""
    async with sessions() as db, db.begin():
        row = await _breaker_row(db)
        row.opened_at = None
        row.consecutive_failures = 0
        row.reset_at = datetime.now(UTC)
        row.reset_by = by
        return _state(row)


def _state(row: CircuitBreaker) -> BreakerState:
    return BreakerState(
        name=row.name,
        open=row.opened_at is not None,
        consecutive_failures=row.consecutive_failures,
        opened_at=row.opened_at,
        last_error=row.last_error,
        reset_at=row.reset_at,
        reset_by=row.reset_by,
    )


async def _breaker_open(db: AsyncSession) -> bool:
    row = await db.get(CircuitBreaker, BREAKER_LAGO_WEBHOOKS)
    return row is not None and row.opened_at is not None


async def _breaker_row(db: AsyncSession) -> CircuitBreaker:
    """The breaker row, created if needed, locked for this transaction."""
    await db.execute(
        insert(CircuitBreaker)
        .values(name=BREAKER_LAGO_WEBHOOKS, consecutive_failures=0)
        .on_conflict_do_nothing(index_elements=["name"])
    )
    row = await db.get(
        CircuitBreaker, BREAKER_LAGO_WEBHOOKS, with_for_update=True, populate_existing=True
    )
    assert row is not None
    return row


# -- the activities ---------------------------------------------------------------------------


class LagoWebhookActivities:
    def __init__(
        self, session_factory: SessionFactory, *, breaker_threshold: int = DEFAULT_BREAKER_THRESHOLD
    ) -> None:
        self._sessions = session_factory
        self._threshold = max(1, breaker_threshold)

    @activity.defn(name=ACTIVITY_PROCESS_LAGO_WEBHOOK)
    async def process_webhook_event(
        self, input: ProcessLagoWebhookInput
    ) -> ProcessLagoWebhookResult:
        async with self._sessions() as db, db.begin():
            row = await db.get(LagoWebhookEvent, input.event_id, with_for_update=True)
            if row is None:
                raise ApplicationError(
                    f"no Lago webhook event {input.event_id}",
                    type=MALFORMED_LAGO_WEBHOOK,
                    non_retryable=True,
                )
            if row.status != WEBHOOK_PENDING:
                return ProcessLagoWebhookResult(status=row.status)
            row.attempts += 1
        async with self._sessions() as db, db.begin():
            row = await db.get(LagoWebhookEvent, input.event_id, with_for_update=True)
            assert row is not None
            try:
                linked, notified = await _handle(db, row.webhook_type, row.payload)
            except MalformedWebhook as exc:
                raise ApplicationError(
                    str(exc), type=MALFORMED_LAGO_WEBHOOK, non_retryable=True
                ) from exc
            lago_invoice_id, invoice_number = _invoice_ref(row.webhook_type, row.payload)
            row.status = WEBHOOK_PROCESSED
            row.processed_at = datetime.now(UTC)
            row.last_error = None
            breaker = await _breaker_row(db)
            if breaker.opened_at is None:
                breaker.consecutive_failures = 0
        return ProcessLagoWebhookResult(
            status=WEBHOOK_PROCESSED,
            linked_sessions=linked,
            notified=notified,
            lago_invoice_id=lago_invoice_id,
            invoice_number=invoice_number,
        )

    @activity.defn(name=ACTIVITY_FAIL_LAGO_WEBHOOK)
    async def fail_webhook_event(self, input: FailLagoWebhookInput) -> None:
        async with self._sessions() as db, db.begin():
            row = await db.get(LagoWebhookEvent, input.event_id, with_for_update=True)
            if row is None or row.status != WEBHOOK_PENDING:
                return  # already settled: never count a failure twice
            now = datetime.now(UTC)
            row.status = WEBHOOK_FAILED
            row.processed_at = now
            row.last_error = input.error
            breaker = await _breaker_row(db)
            breaker.consecutive_failures += 1
            breaker.last_failure_at = now
            breaker.last_error = input.error
            if breaker.opened_at is None and breaker.consecutive_failures >= self._threshold:
                breaker.opened_at = now


# -- what each webhook does -------------------------------------------------------------------


async def _handle(
    db: AsyncSession, webhook_type: str, payload: dict[str, Any]
) -> tuple[list[str], int]:
    if webhook_type == "invoice.created":
        return await _invoice_created(db, payload)
    return [], 0  # stored for the log; nothing else to do yet


def _invoice_ref(webhook_type: str, payload: dict[str, Any]) -> tuple[str | None, str | None]:
    """(lago id, number) of an ``invoice.created`` payload's invoice."""
    invoice = payload.get("invoice") if webhook_type == "invoice.created" else None
    if not isinstance(invoice, dict):
        return None, None
    lago_id, number = invoice.get("lago_id"), invoice.get("number")
    return (
        lago_id if isinstance(lago_id, str) else None,
        number if isinstance(number, str) else None,
    )


async def _invoice_created(db: AsyncSession, payload: dict[str, Any]) -> tuple[list[str], int]:
    invoice = payload.get("invoice")
    if not isinstance(invoice, dict) or not isinstance(invoice.get("lago_id"), str):
        raise MalformedWebhook("invoice.created without an invoice object")
    lago_id: str = invoice["lago_id"]
    customer = invoice.get("customer") or {}
    customer_id = customer.get("external_id") if isinstance(customer, dict) else None
    if not isinstance(customer_id, str):
        raise MalformedWebhook("invoice.created without customer.external_id")
    fees = [fee for fee in invoice.get("fees") or [] if isinstance(fee, dict)]

    workflow_ids: set[str] = set()
    # One-off (per-session) invoices: ours carry the session's marker in the fee description.
    for fee in fees:
        match = _MARKER.search(str(fee.get("description") or ""))
        if match:
            workflow_ids.add(match.group("workflow_id"))
    already = await db.scalars(
        select(SessionInvoice.workflow_id).where(SessionInvoice.lago_invoice_id == lago_id)
    )
    workflow_ids.update(already.all())
    # Subscription invoices: the sessions whose usage we sent inside the fees' period.
    period = _fee_period(fees)
    if invoice.get("invoice_type") == "subscription" and period is not None:
        start, end = period
        # Lago sees our events at whole seconds (we send floor(occurred_at)) and periods end on
        # a whole second (…T23:59:59Z): an event belongs if floor(occurred_at) <= end.
        rows = await db.scalars(
            select(BillingEvent.workflow_id)
            .where(BillingEvent.lago_customer_external_id == customer_id)
            .where(BillingEvent.sent_at.is_not(None))
            .where(BillingEvent.occurred_at >= start)
            .where(BillingEvent.occurred_at < end + timedelta(seconds=1))
            .distinct()
        )
        workflow_ids.update(rows.all())

    now = datetime.now(UTC)
    for workflow_id in sorted(workflow_ids):
        await db.execute(
            insert(SessionInvoice)
            .values(
                workflow_id=workflow_id,
                lago_invoice_id=lago_id,
                invoice_number=invoice.get("number"),
                source="webhook",
                external_customer_id=customer_id,
                amount_minor=invoice.get("total_amount_cents"),
                currency=invoice.get("currency"),
                linked_at=now,
            )
            .on_conflict_do_nothing(
                index_elements=["workflow_id", "lago_invoice_id"],
                index_where=SessionInvoice.lago_invoice_id.is_not(None),
            )
        )
    # The customer's driver (a Lago customer id is a user's public id or their mapped id); an
    # invoice of a customer no driver has any more tells nobody.
    owner = await user_of_recipient(db, customer_id)
    notified = None
    if owner is not None:
        notified = await notify(
            db,
            user_id=owner,
            kind=INVOICE_CREATED,
            dedupe_key=f"invoice.created:{lago_id}",
            title=f"New invoice {invoice.get('number') or lago_id}",
            data={
                "lago_invoice_id": lago_id,
                "number": invoice.get("number"),
                "total_amount_cents": invoice.get("total_amount_cents"),
                "currency": invoice.get("currency"),
                "workflow_ids": sorted(workflow_ids),
            },
        )
    return sorted(workflow_ids), 0 if notified is None else 1


def _fee_period(fees: list[dict[str, Any]]) -> tuple[datetime, datetime] | None:
    starts: list[datetime] = []
    ends: list[datetime] = []
    for fee in fees:
        try:
            if fee.get("from_date") and fee.get("to_date"):
                starts.append(datetime.fromisoformat(str(fee["from_date"])))
                ends.append(datetime.fromisoformat(str(fee["to_date"])))
        except ValueError as exc:
            raise MalformedWebhook(f"fee period is not ISO 8601: {exc}") from exc
    if not starts:
        return None
    return min(starts), max(ends)
