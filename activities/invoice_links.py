"""Spread an invoice link to its sessions: the read model, and the running workflows.

``LagoWebhookWorkflow`` links an ``invoice.created`` to sessions in ``session_invoices``; this
activity then writes ``charging_sessions.lago_invoice_id`` and signals each session workflow
(``invoice_linked``). A workflow that has completed cannot receive signals — Temporal answers
"not found" — and needs none: its read model row carries the link.
"""

from __future__ import annotations

import logging

from sqlalchemy import update
from temporalio import activity
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from db.engine import SessionFactory
from db.models import ChargingSession
from workflows.lago_webhook import ACTIVITY_LINK_INVOICE, LinkInvoiceInput, LinkInvoiceResult
from workflows.messages import SIGNAL_INVOICE_LINKED, InvoiceLinked

log = logging.getLogger("polaris.billing.invoice_links")


class InvoiceLinkActivities:
    """Needs the Temporal client (to signal) besides the database."""

    def __init__(self, client: Client, session_factory: SessionFactory) -> None:
        self._client = client
        self._sessions = session_factory

    @activity.defn(name=ACTIVITY_LINK_INVOICE)
    async def link_invoice_to_sessions(self, input: LinkInvoiceInput) -> LinkInvoiceResult:
        """Idempotent: the same column value and a signal the workflow may receive twice."""
        if not input.workflow_ids:
            return LinkInvoiceResult()
        async with self._sessions() as db, db.begin():
            await db.execute(
                update(ChargingSession)
                .where(ChargingSession.workflow_id.in_(input.workflow_ids))
                .values(lago_invoice_id=input.lago_invoice_id)
            )
        signal = InvoiceLinked(
            lago_invoice_id=input.lago_invoice_id,
            invoice_number=input.invoice_number,
            event_id=input.event_id,
        )
        result = LinkInvoiceResult()
        for workflow_id in input.workflow_ids:
            try:
                await self._client.get_workflow_handle(workflow_id).signal(
                    SIGNAL_INVOICE_LINKED, signal
                )
            except RPCError as exc:
                if exc.status != RPCStatusCode.NOT_FOUND:
                    raise  # Temporal unreachable: retried
                log.info("session %s has completed; its read model has the invoice", workflow_id)
                result.closed.append(workflow_id)
                continue
            result.signalled.append(workflow_id)
        return result


__all__ = ["InvoiceLinkActivities"]
