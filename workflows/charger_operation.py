"""ChargerOperationWorkflow: one operation an operator asked for (API or CLI), sent through the
gateway that holds the charger's socket.

The service layer (``services/operations.py``) writes the ``charger_operations`` row and starts
this workflow with id ``charger-op:<operation id>``. The workflow runs ``send_charger_command``
once on ``gateway-<instance>``: the gateway advances the row (sent, then the charger's answer or
the error). Two failures the gateway cannot record itself are recorded here by a worker activity:

- nobody picks the command up within ``pickup_timeout_s`` (10 s) (the gateway process is down):
  ``charger_offline``;
- the gateway took it and never reported within the operation's timeout (it died mid-call):
  ``timed_out``.

One attempt only: an operator's command is not repeated behind their back (a Reset twice is two
reboots); they see the outcome and decide.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError, TimeoutType

with workflow.unsafe.imports_passed_through():
    from activities.operations import (
        ACTIVITY_FINISH_CHARGER_OPERATION,
        FinishOperationInput,
        FinishOperationResult,
    )
    from domain.operations import outcome_of_answer
    from workflows import messages as msg

CHARGER_OPERATION_WORKFLOW = "ChargerOperation"
# How long a command may wait for its gateway to pick it up before the charger counts as offline.
PICKUP_TIMEOUT_S = 10.0
# The gateway's own timeout answers first; this margin covers its database writes.
GATEWAY_MARGIN = timedelta(seconds=10)
ONE_ATTEMPT = RetryPolicy(maximum_attempts=1)
DB_TIMEOUT = timedelta(seconds=15)
DB_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30)
)


def workflow_id_for(operation_id: str) -> str:
    return f"charger-op:{operation_id}"


class ChargerOperationInput(BaseModel):
    operation_id: str
    charge_box_id: str
    action: msg.ChargerAction
    # Secrets are "***" here (the gateway reads them from the operation's stash).
    payload: dict[str, object] = Field(default_factory=dict)
    timeout_s: float = 30.0
    gateway_task_queue: str
    pickup_timeout_s: float = PICKUP_TIMEOUT_S


class ChargerOperationResult(BaseModel):
    status: str
    response: dict[str, object] | None = None
    error: str | None = None


@workflow.defn(name=CHARGER_OPERATION_WORKFLOW)
class ChargerOperationWorkflow:
    @workflow.run
    async def run(self, input: ChargerOperationInput) -> ChargerOperationResult:
        try:
            answer: msg.ChargerCommandResult = await workflow.execute_activity(
                msg.ACTIVITY_SEND_CHARGER_COMMAND,
                msg.ChargerCommandInput(
                    charge_box_id=input.charge_box_id,
                    action=input.action,
                    payload=input.payload,
                    timeout_s=input.timeout_s,
                    operation_id=input.operation_id,
                ),
                task_queue=input.gateway_task_queue,
                result_type=msg.ChargerCommandResult,
                schedule_to_start_timeout=timedelta(seconds=input.pickup_timeout_s),
                start_to_close_timeout=timedelta(seconds=input.timeout_s) + GATEWAY_MARGIN,
                retry_policy=ONE_ATTEMPT,
            )
        except ActivityError as err:
            return await self._failed(input, err)
        return ChargerOperationResult(
            status=outcome_of_answer(answer.payload), response=answer.payload
        )

    async def _failed(
        self, input: ChargerOperationInput, err: ActivityError
    ) -> ChargerOperationResult:
        cause = err.cause
        unsent: str | None = None
        if isinstance(cause, TimeoutError) and cause.type == TimeoutType.SCHEDULE_TO_START:
            status = "charger_offline"
            error = f"no gateway picked the command up from {input.gateway_task_queue}"
        elif isinstance(cause, TimeoutError):
            status = "timed_out"
            error = f"the gateway did not report within {input.timeout_s}s"
            unsent = "failed"  # it took the command and died before sending it
        elif isinstance(cause, ApplicationError):
            status, error = "failed", f"{cause.type}: {cause.message}"
        else:
            status, error = "failed", str(cause or err)
        # The gateway finished the row already unless it could not: then this does.
        finished: FinishOperationResult = await workflow.execute_activity(
            ACTIVITY_FINISH_CHARGER_OPERATION,
            FinishOperationInput(
                operation_id=input.operation_id,
                status=status,
                error=error,
                status_if_unsent=unsent,
            ),
            result_type=FinishOperationResult,
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
        )
        return ChargerOperationResult(status=finished.status or status, error=error)
