"""Adaptive Cadence as a durable scheduler, on the time-skipping test server over simulated
weeks: Active (15 min) → Idle (hourly) after two quiet runs; charger activity (the signal the
gateway's outbox delivers) returns to Active at once; Dormant (weekly) after the configured
time without activity; continue-as-new keeps each run's history short.

The sync run itself is tested end to end in ``test_sync.py``; here the cadence's child is a
quiet run (nothing to change) registered under the sync workflow's name, so the scheduler's
timing is what is observed. The defaults' "30 days without activity" is checked by the pure
rule (tests/domain/test_steve_cadence.py); here it is one day, to keep the simulated hourly
runs few.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from temporalio import workflow
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from workflows.steve_cadence import SteveCadenceWorkflow
from workflows.steve_messages import (
    QUERY_CADENCE,
    SIGNAL_CADENCE_ACTIVITY,
    SYNC_RUN_WORKFLOW,
    CadenceActivity,
    CadenceInput,
    CadenceStatus,
    SyncRunInput,
    SyncRunSummary,
)

pytestmark = pytest.mark.timeout(300)


@workflow.defn(name=SYNC_RUN_WORKFLOW)
class QuietSyncRun:
    """A sync run that finds nothing to change."""

    @workflow.run
    async def run(self, input: SyncRunInput) -> SyncRunSummary:
        return SyncRunSummary(run_id=1, status="completed", changes=0)


async def status(handle: WorkflowHandle[SteveCadenceWorkflow, None]) -> CadenceStatus:
    return await handle.query(QUERY_CADENCE, result_type=CadenceStatus)


async def test_cadence_over_simulated_weeks(time_skipping_env: WorkflowEnvironment) -> None:
    env = time_skipping_env
    client: Client = env.client
    queue = f"cadence-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=queue, workflows=[SteveCadenceWorkflow, QuietSyncRun]):
        handle = await client.start_workflow(
            SteveCadenceWorkflow.run,
            CadenceInput(dormant_after_s=24 * 3600, continue_as_new_after=5),
            id=f"steve-cadence-{uuid.uuid4().hex[:8]}",
            task_queue=queue,
        )
        try:
            first_run_id = (await handle.describe()).run_id
            await env.sleep(timedelta(minutes=1))
            s = await status(handle)
            assert (s.mode, s.runs, s.idle_streak, s.interval_s) == ("active", 1, 1, 900)

            # A second quiet run, 15 minutes later: demoted to Idle (hourly).
            await env.sleep(timedelta(minutes=19))
            s = await status(handle)
            assert (s.mode, s.runs, s.interval_s) == ("idle", 2, 3600)

            # A charger starts a transaction: Active at once, next run within 15 minutes.
            now = await env.get_current_time()
            await handle.signal(
                SIGNAL_CADENCE_ACTIVITY, CadenceActivity(event_id=1, charge_box_id="CB-1", at=now)
            )
            s = await status(handle)
            assert (s.mode, s.idle_streak) == ("active", 0)
            # (the signal is handled a moment of simulated time after `now`, well within a minute)
            assert s.next_run_at is not None and s.next_run_at < now + timedelta(minutes=16)
            # The same outbox row delivered twice counts once.
            await handle.signal(SIGNAL_CADENCE_ACTIVITY, CadenceActivity(event_id=1, at=now))

            # The streak started again at the activity: two quiet runs after it demote again.
            await env.sleep(timedelta(minutes=16))
            s = await status(handle)
            assert (s.mode, s.runs, s.idle_streak) == ("active", 3, 1)
            await env.sleep(timedelta(minutes=30))
            s = await status(handle)
            assert (s.mode, s.runs) == ("idle", 4)

            # A day without activity: Dormant, weekly.
            await env.sleep(timedelta(days=1, hours=2))
            s = await status(handle)
            assert (s.mode, s.interval_s) == ("dormant", 7 * 24 * 3600)
            runs_at_dormancy = s.runs

            # Two simulated weeks: two weekly runs.
            await env.sleep(timedelta(days=14))
            s = await status(handle)
            assert (s.mode, s.runs - runs_at_dormancy) == ("dormant", 2)

            # Activity wakes it: the next run is within 15 minutes, not a week away.
            now = await env.get_current_time()
            await handle.signal(SIGNAL_CADENCE_ACTIVITY, CadenceActivity(event_id=2, at=now))
            await env.sleep(timedelta(minutes=16))
            s = await status(handle)
            assert (s.mode, s.runs - runs_at_dormancy) == ("active", 3)

            # Continue-as-new kept each run's history short.
            described = await handle.describe()
            assert described.run_id != first_run_id
            history = await client.get_workflow_handle(
                handle.id, run_id=described.run_id
            ).fetch_history()
            assert len(history.events) < 200
        finally:
            # The cadence never ends by itself: leave nothing running on the test server.
            await handle.terminate("test over")
