"""Retention: old rows deleted in small batches (workflows/retention.py runs these daily).

Each table has one rule (what may go, and the age column); a call deletes batch after batch, each
in its own short transaction, until nothing older is left or the call's budget is spent (then it
says ``more`` and the workflow calls again). Rows that still matter are never candidates:
undelivered outbox rows, meter samples of a session that is running or not fully billed, pending
webhook events and events a replay still points at.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, Field
from sqlalchemy import text
from temporalio import activity

from db.engine import SessionFactory
from domain.session_model import FINAL_PHASES

log = logging.getLogger(__name__)

FINAL_STATES = ", ".join(f"'{phase}'" for phase in sorted(FINAL_PHASES))

# table → the condition of a row that may go (``:cutoff`` is now - days).
RULES: dict[str, str] = {
    "gateway_outbox": "delivered_at IS NOT NULL AND delivered_at < :cutoff",
    "audit_log": "at < :cutoff",
    "platform_events": "occurred_at < :cutoff",
    "lago_webhook_events": (
        "created_at < :cutoff AND status <> 'pending' AND NOT EXISTS ("
        " SELECT 1 FROM lago_webhook_events r WHERE r.replay_of = t.id)"
    ),
    # Only once billing is complete for the sample's session: the session is over, and none of
    # its billing lines waits to be sent (unless a per-session invoice billed them).
    "meter_samples": (
        "received_at < :cutoff AND ("
        " t.transaction_id IS NULL OR EXISTS ("
        "  SELECT 1 FROM transactions tx"
        "  JOIN charging_sessions cs ON cs.workflow_id = tx.workflow_id"
        "  WHERE tx.id = t.transaction_id"
        f"  AND cs.state IN ({FINAL_STATES})"
        "  AND (NOT EXISTS (SELECT 1 FROM billing_events be"
        "        WHERE be.workflow_id = cs.workflow_id AND be.sent_at IS NULL)"
        "       OR EXISTS (SELECT 1 FROM session_invoices si"
        "        WHERE si.workflow_id = cs.workflow_id))))"
    ),
}
BATCHES_PER_CALL = 50


class PruneInput(BaseModel):
    table: str
    days: int = Field(ge=1)
    batch_size: int = Field(default=1000, ge=1)


class PruneResult(BaseModel):
    deleted: int
    more: bool


class RetentionActivities:
    def __init__(self, session_factory: SessionFactory) -> None:
        self._sessions = session_factory

    @activity.defn(name="retention_prune")
    async def prune(self, input: PruneInput) -> PruneResult:
        rule = RULES.get(input.table)
        if rule is None:
            raise ValueError(f"no retention rule for table {input.table!r}")
        cutoff = datetime.now(UTC) - timedelta(days=input.days)
        statement = text(
            f"DELETE FROM {input.table} WHERE id IN ("
            f"SELECT t.id FROM {input.table} t WHERE {rule} ORDER BY t.id LIMIT :batch)"
        )
        deleted = 0
        for batch in range(BATCHES_PER_CALL):
            async with self._sessions() as db, db.begin():
                result = await db.execute(statement, {"cutoff": cutoff, "batch": input.batch_size})
            count = int(getattr(result, "rowcount", 0) or 0)
            deleted += count
            if activity.in_activity():
                activity.heartbeat(batch)
            if count < input.batch_size:
                if deleted:
                    log.info("retention: %d rows of %s deleted", deleted, input.table)
                return PruneResult(deleted=deleted, more=False)
        return PruneResult(deleted=deleted, more=True)
