"""Billing activities: record usage events durably, keyed by their deterministic id.

The seam for Lago: ``record_billing_events`` only writes ``billing_events`` rows (``sent_at``
NULL). A ``send_usage_events`` activity (next issue) will read unsent rows of a workflow, POST them
to Lago ``/events`` with ``transaction_id`` = the row's id (Lago deduplicates; a 422
``value_already_exist`` counts as success), and set ``sent_at``. The workflow will call it right
after ``record_billing_events``; nothing here needs to change for that.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy.dialects.postgresql import insert
from temporalio import activity

from activities.db_errors import data_errors_are_final
from db.engine import SessionFactory
from db.models import BillingEvent

ACTIVITY_RECORD_BILLING_EVENTS = "record_billing_events"


class BillingEventRecord(BaseModel):
    transaction_id: str  # "<workflow id>:<sequence>", the idempotency key end to end
    workflow_id: str
    sequence: int = Field(ge=1)
    kind: Literal["periodic", "final", "compensation"]
    energy_wh: int = Field(ge=0)
    amount_minor: int = Field(ge=0)
    currency: str = Field(min_length=3, max_length=3)
    occurred_at: datetime
    lago_customer_external_id: str | None = None


class RecordBillingEventsInput(BaseModel):
    events: list[BillingEventRecord]


class RecordBillingEventsResult(BaseModel):
    inserted: int
    already_recorded: int


class BillingActivities:
    def __init__(self, session_factory: SessionFactory) -> None:
        self._sessions = session_factory

    @activity.defn(name=ACTIVITY_RECORD_BILLING_EVENTS)
    @data_errors_are_final
    async def record_billing_events(
        self, input: RecordBillingEventsInput
    ) -> RecordBillingEventsResult:
        """Insert the events; ones already recorded (same id) are left as they are."""
        if not input.events:
            return RecordBillingEventsResult(inserted=0, already_recorded=0)
        statement = (
            insert(BillingEvent)
            .values([event.model_dump() for event in input.events])
            .on_conflict_do_nothing()
            .returning(BillingEvent.transaction_id)
        )
        async with self._sessions() as db, db.begin():
            inserted = len((await db.execute(statement)).scalars().all())
        return RecordBillingEventsResult(
            inserted=inserted, already_recorded=len(input.events) - inserted
        )
