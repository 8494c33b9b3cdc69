"""SyncRunWorkflow: one SteVe sync run (docs/steve.md).

The run's row is made first (``steve_sync_runs``, status ``running``), then each segment runs as
one heartbeating activity, in order: tags, Lago customers, subscriptions, transactions, local
reconcile, invoices (an imported session's owner has a subscription before it is billed). A
segment that still fails after its retries is recorded (log and errors) and the run goes on with
the next one; the run ends ``failed`` if any segment failed, else ``completed``. A retry of a
failed run is a new run (``retry_of`` names the old one).

Deterministic: no I/O and no clock here; the activities do everything.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.policies import DATABASE_RETRY

with workflow.unsafe.imports_passed_through():
    from activities.steve_sync import SteveSyncActivities
    from workflows.steve_messages import (
        SEGMENTS,
        SYNC_RUN_WORKFLOW,
        BeginRunInput,
        FinishRunInput,
        SegmentFailure,
        SegmentInput,
        SyncRunInput,
        SyncRunSummary,
    )

DB_TIMEOUT = timedelta(seconds=30)
# A segment pages through SteVe and Lago; it heartbeats per item, so a stuck one is noticed
# after HEARTBEAT_TIMEOUT, not after SEGMENT_TIMEOUT.
SEGMENT_TIMEOUT = timedelta(minutes=20)
HEARTBEAT_TIMEOUT = timedelta(minutes=1)
SEGMENT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    maximum_attempts=4,
    non_retryable_error_types=[
        "SteveAuthError",
        "SteveBadRequest",
        "TagNotEligible",
        "SteveNotFound",
        "SteveNotConfigured",
    ],
)


def _reason(err: ActivityError) -> tuple[str, str | None]:
    cause = err.cause
    if isinstance(cause, ApplicationError):
        return cause.message, cause.type
    return str(cause or err), type(cause).__name__ if cause else None


@workflow.defn(name=SYNC_RUN_WORKFLOW)
class SyncRunWorkflow:
    def __init__(self) -> None:
        self._segment: str | None = None

    @workflow.query(name="steve_sync_segment")
    def segment(self) -> str | None:
        return self._segment

    @workflow.run
    async def run(self, input: SyncRunInput) -> SyncRunSummary:
        run_id: int = await workflow.execute_activity_method(
            SteveSyncActivities.begin_run,
            BeginRunInput(
                workflow_id=workflow.info().workflow_id,
                trigger=input.trigger,
                requested_by=input.requested_by,
                retry_of=input.retry_of,
            ),
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DATABASE_RETRY,
        )
        for segment in SEGMENTS:
            self._segment = segment
            try:
                await workflow.execute_activity_method(
                    SteveSyncActivities.run_segment,
                    SegmentInput(run_id=run_id, segment=segment),
                    start_to_close_timeout=SEGMENT_TIMEOUT,
                    heartbeat_timeout=HEARTBEAT_TIMEOUT,
                    retry_policy=SEGMENT_RETRY,
                )
            except ActivityError as err:
                message, kind = _reason(err)
                await workflow.execute_activity_method(
                    SteveSyncActivities.segment_failed,
                    SegmentFailure(run_id=run_id, segment=segment, error=message, error_type=kind),
                    start_to_close_timeout=DB_TIMEOUT,
                    retry_policy=DATABASE_RETRY,
                )
        self._segment = None
        summary: SyncRunSummary = await workflow.execute_activity_method(
            SteveSyncActivities.finish_run,
            FinishRunInput(run_id=run_id),
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DATABASE_RETRY,
        )
        return summary
