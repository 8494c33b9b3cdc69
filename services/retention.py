"""The retention schedule: created at worker start, or updated to the current settings."""

from __future__ import annotations

import logging

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from config.settings import Settings
from workflows.retention import SCHEDULE_ID, WORKFLOW_ID, RetentionInput, RetentionWorkflow

log = logging.getLogger(__name__)


def retention_schedule(settings: Settings, task_queue: str) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            RetentionWorkflow.run,
            RetentionInput(
                days=settings.retention_days(), batch_size=settings.retention_batch_size
            ),
            id=WORKFLOW_ID,
            task_queue=task_queue,
        ),
        spec=ScheduleSpec(cron_expressions=[settings.retention_cron]),
        # One run at a time: a long run is never doubled by the next tick.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def ensure_retention_schedule(
    client: Client,
    settings: Settings,
    *,
    task_queue: str | None = None,
    schedule_id: str = SCHEDULE_ID,
) -> None:
    """Idempotent: every worker start creates the schedule or brings it to these settings."""
    schedule = retention_schedule(settings, task_queue or settings.temporal_task_queue)
    try:
        await client.create_schedule(schedule_id, schedule)
        log.info("retention schedule %s created (%s)", schedule_id, settings.retention_cron)
    except ScheduleAlreadyRunningError:

        def replace(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(schedule_id).update(replace)
