"""The retention run (issue #13): every table's old rows deleted, table by table, in batches.

Started by the Temporal Schedule ``polaris-retention`` (created or updated at every worker start
from the settings, :func:`ensure_retention_schedule`); ``polaris``'s settings reach the workflow
only through its input (workflows read no settings). 0 days keeps a table forever.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.retention import PruneInput, PruneResult, RetentionActivities

SCHEDULE_ID = "polaris-retention"
WORKFLOW_ID = "polaris-retention-run"
PRUNE_TIMEOUT = timedelta(minutes=10)
PRUNE_HEARTBEAT = timedelta(minutes=2)
PRUNE_RETRY = RetryPolicy(maximum_interval=timedelta(minutes=5), maximum_attempts=10)


class RetentionInput(BaseModel):
    # table → days kept (0: forever)
    days: dict[str, int] = Field(default_factory=dict)
    batch_size: int = Field(default=1000, ge=1)


class RetentionResult(BaseModel):
    deleted: dict[str, int] = Field(default_factory=dict)


@workflow.defn(name="RetentionWorkflow")
class RetentionWorkflow:
    @workflow.run
    async def run(self, input: RetentionInput) -> RetentionResult:
        result = RetentionResult()
        for table, days in sorted(input.days.items()):
            if days <= 0:
                continue
            deleted = 0
            while True:
                pruned: PruneResult = await workflow.execute_activity_method(
                    RetentionActivities.prune,
                    PruneInput(table=table, days=days, batch_size=input.batch_size),
                    start_to_close_timeout=PRUNE_TIMEOUT,
                    heartbeat_timeout=PRUNE_HEARTBEAT,
                    retry_policy=PRUNE_RETRY,
                )
                deleted += pruned.deleted
                if not pruned.more:
                    break
            result.deleted[table] = deleted
        return result
