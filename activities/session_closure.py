"""The journal side of a transaction the platform closed without a StopTransaction.

ChargingSessionWorkflow calls :meth:`SessionClosureActivities.record_session_closure` for every
such closure (the charger forgot the transaction, the watchdog gave up on a silent charger, an
operator force-closed it). It marks the ``transactions`` row closed (``stopped_at`` stays NULL,
so a late StopTransaction is still journaled and compensated) and writes the audit row, once:
the update only matches a row that is neither stopped nor closed, and the audit row goes with it
in the same database transaction (a closure with no journal row at all is audited too). When the
gateway closed the row itself (a new transaction on the connector, a reboot), it already audited,
and this finds nothing to do.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import insert, select, update
from temporalio import activity

from activities.db_errors import data_errors_are_final
from db.engine import SessionFactory
from db.models import AuditLog, Transaction
from domain.closure import AUDIT_SESSION_CLOSED, closure_details

ACTIVITY_RECORD_SESSION_CLOSURE = "record_session_closure"


class RecordSessionClosureInput(BaseModel):
    workflow_id: str
    charge_box_id: str
    transaction_id: int
    reason: str
    at: datetime
    register_wh: int
    requested_by: str | None = None
    note: str | None = None


class RecordSessionClosureResult(BaseModel):
    recorded: bool  # False: the row was stopped or closed already (nothing audited twice)


class SessionClosureActivities:
    def __init__(self, session_factory: SessionFactory) -> None:
        self._sessions = session_factory

    @activity.defn(name=ACTIVITY_RECORD_SESSION_CLOSURE)
    @data_errors_are_final
    async def record_session_closure(
        self, input: RecordSessionClosureInput
    ) -> RecordSessionClosureResult:
        async with self._sessions() as db, db.begin():
            closed = await db.scalar(
                update(Transaction)
                .where(
                    Transaction.id == input.transaction_id,
                    Transaction.charge_box_id == input.charge_box_id,
                    Transaction.stopped_at.is_(None),
                    Transaction.closed_at.is_(None),
                )
                .values(closed_at=input.at, closed_reason=input.reason[:32])
                .returning(Transaction.id)
            )
            if closed is None:
                journaled = await db.scalar(
                    select(Transaction.id).where(
                        Transaction.id == input.transaction_id,
                        Transaction.charge_box_id == input.charge_box_id,
                    )
                )
                if journaled is not None:
                    # Stopped meanwhile, or the gateway closed (and audited) it already.
                    return RecordSessionClosureResult(recorded=False)
                # No journal row here (a transaction this gateway never journaled): the closure
                # is still audited.
            await db.execute(
                insert(AuditLog).values(
                    actor=input.requested_by or "workflow",
                    action=AUDIT_SESSION_CLOSED,
                    subject=input.workflow_id,
                    source="worker",
                    details=closure_details(
                        transaction_id=input.transaction_id,
                        charge_box_id=input.charge_box_id,
                        reason=input.reason,
                        register_wh=input.register_wh,
                        note=input.note,
                    ),
                )
            )
        return RecordSessionClosureResult(recorded=True)


__all__ = [
    "ACTIVITY_RECORD_SESSION_CLOSURE",
    "RecordSessionClosureInput",
    "RecordSessionClosureResult",
    "SessionClosureActivities",
]
