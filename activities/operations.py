"""Worker-side activities of remote operations (the gateway's ``send_charger_command`` does the
sending): finishing an operation whose gateway never reported, because it was down (never picked
the command up) or died mid-call."""

from __future__ import annotations

from pydantic import BaseModel
from temporalio import activity

from db.engine import SessionFactory
from db.operation_models import ChargerOperation
from db.operations import finish_operation

ACTIVITY_FINISH_CHARGER_OPERATION = "finish_charger_operation"


class FinishOperationInput(BaseModel):
    operation_id: str
    status: str  # a final status of domain/operations.py
    error: str
    # Used instead when the row is still ``requested``: the gateway never marked it sent, so
    # nothing left (e.g. "failed" where a sent row would be "timed_out").
    status_if_unsent: str | None = None


class FinishOperationResult(BaseModel):
    status: str | None  # the row's status afterwards (None: no such row)


class OperationActivities:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    @activity.defn(name=ACTIVITY_FINISH_CHARGER_OPERATION)
    async def finish_charger_operation(self, input: FinishOperationInput) -> FinishOperationResult:
        """Finish the row unless the gateway already did (idempotent: a finished row stays)."""
        status = input.status
        if input.status_if_unsent is not None:
            async with self._sessions() as db:
                row = await db.get(ChargerOperation, input.operation_id)
            if row is not None and row.status == "requested":
                status = input.status_if_unsent
        row = await finish_operation(self._sessions, input.operation_id, status, error=input.error)
        return FinishOperationResult(status=row.status if row is not None else None)
