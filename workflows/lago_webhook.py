"""LagoWebhookWorkflow: process one stored inbound Lago webhook (or an operator's replay of one).

Workflow id ``lago-webhook:<lago_webhook_events.id>``: one run per stored row, so a webhook Lago
delivers twice (same ``X-Lago-Unique-Key``) is one row and one run, and a replay is a new row
and a new run. The work is one activity (``lago_process_webhook_event``, retried for transient
errors); when it finally fails, ``lago_fail_webhook_event`` marks the row ``failed`` and counts
the failure toward the circuit breaker.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

LAGO_WEBHOOK_WORKFLOW = "LagoWebhook"
ACTIVITY_PROCESS_LAGO_WEBHOOK = "lago_process_webhook_event"
ACTIVITY_FAIL_LAGO_WEBHOOK = "lago_fail_webhook_event"
ACTIVITY_LINK_INVOICE = "lago_link_invoice_to_sessions"
# Executions recorded before it never told the sessions about their invoice.
INVOICE_LINK_PATCH = "invoice-linked-signal-v1"

# Raised (non-retryable) by the processing activity for a payload it can never process.
MALFORMED_LAGO_WEBHOOK = "MalformedLagoWebhook"


def lago_webhook_workflow_id(event_id: int) -> str:
    return f"lago-webhook:{event_id}"


class LagoWebhookInput(BaseModel):
    event_id: int
    max_attempts: int = 5


class ProcessLagoWebhookInput(BaseModel):
    event_id: int


class ProcessLagoWebhookResult(BaseModel):
    status: str  # processed | failed | skipped (what the row says afterwards)
    linked_sessions: list[str] = []
    notified: int = 0
    # invoice.created: the invoice the sessions were linked to.
    lago_invoice_id: str | None = None
    invoice_number: str | None = None


class LinkInvoiceInput(BaseModel):
    """Tell the linked sessions (signal ``invoice_linked``, read model) about their invoice."""

    lago_invoice_id: str
    invoice_number: str | None = None
    event_id: int | None = None
    workflow_ids: list[str]


class LinkInvoiceResult(BaseModel):
    signalled: list[str] = []
    closed: list[str] = []  # not running any more: the read model alone carries the link


class FailLagoWebhookInput(BaseModel):
    event_id: int
    error: str


class LagoWebhookResult(BaseModel):
    event_id: int
    status: str
    linked_sessions: list[str] = []
    error: str | None = None


@workflow.defn(name=LAGO_WEBHOOK_WORKFLOW)
class LagoWebhookWorkflow:
    @workflow.run
    async def run(self, input: LagoWebhookInput) -> LagoWebhookResult:
        try:
            done = await workflow.execute_activity(
                ACTIVITY_PROCESS_LAGO_WEBHOOK,
                ProcessLagoWebhookInput(event_id=input.event_id),
                result_type=ProcessLagoWebhookResult,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=1),
                    backoff_coefficient=2.0,
                    maximum_interval=timedelta(seconds=30),
                    maximum_attempts=max(1, input.max_attempts),
                    non_retryable_error_types=[MALFORMED_LAGO_WEBHOOK],
                ),
            )
        except ActivityError as exc:
            error = str(exc.cause) if exc.cause is not None else str(exc)
            # Recording the failure must happen; PostgreSQL may be down for a while.
            await workflow.execute_activity(
                ACTIVITY_FAIL_LAGO_WEBHOOK,
                FailLagoWebhookInput(event_id=input.event_id, error=error[:4000]),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1)),
            )
            return LagoWebhookResult(event_id=input.event_id, status="failed", error=error)
        if (
            done.linked_sessions
            and done.lago_invoice_id is not None
            and workflow.patched(INVOICE_LINK_PATCH)
        ):
            await workflow.execute_activity(
                ACTIVITY_LINK_INVOICE,
                LinkInvoiceInput(
                    lago_invoice_id=done.lago_invoice_id,
                    invoice_number=done.invoice_number,
                    event_id=input.event_id,
                    workflow_ids=done.linked_sessions,
                ),
                result_type=LinkInvoiceResult,
                start_to_close_timeout=timedelta(seconds=30),
                # The link is already in session_invoices; this only spreads it. Keep trying
                # while PostgreSQL or Temporal are briefly away.
                retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1)),
            )
        return LagoWebhookResult(
            event_id=input.event_id, status=done.status, linked_sessions=done.linked_sessions
        )
