"""ChargerOfflineEventsWorkflow: announces chargers that went silent (``charger.offline``).

A charger is offline when it has not been seen for the heartbeat interval × 3 (the rule the
driver's availability view uses too). One long-running instance (workflow id
``charger-offline-events``), started by every worker at startup with the ``USE_EXISTING``
conflict policy: every ``interval_s`` it runs ``announce_offline_chargers``, which marks each newly
silent charger and records one event per offline episode in the same transaction (a new episode
starts once the charger is seen again). It continues as new after ``iterations_per_run`` rounds.

Why a periodic workflow rather than a query on read: webhooks and inboxes need the event even
when nobody is reading, exactly once per episode, whichever worker runs it.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

CHARGER_OFFLINE_EVENTS_WORKFLOW = "ChargerOfflineEvents"
CHARGER_OFFLINE_EVENTS_WORKFLOW_ID = "charger-offline-events"
ACTIVITY_ANNOUNCE_OFFLINE_CHARGERS = "announce_offline_chargers"


class OfflineEventsInput(BaseModel):
    interval_s: float = 60.0
    silence_s: float = 900.0  # heartbeat interval × 3
    iterations_per_run: int = 500


class AnnounceOfflineInput(BaseModel):
    silence_s: float


class AnnounceOfflineResult(BaseModel):
    charge_box_ids: list[str] = []


@workflow.defn(name=CHARGER_OFFLINE_EVENTS_WORKFLOW)
class ChargerOfflineEventsWorkflow:
    @workflow.run
    async def run(self, params: OfflineEventsInput) -> None:
        for _ in range(params.iterations_per_run):
            try:
                await workflow.execute_activity(
                    ACTIVITY_ANNOUNCE_OFFLINE_CHARGERS,
                    AnnounceOfflineInput(silence_s=params.silence_s),
                    result_type=AnnounceOfflineResult,
                    start_to_close_timeout=timedelta(seconds=30),
                    retry_policy=RetryPolicy(
                        initial_interval=timedelta(seconds=2),
                        maximum_interval=timedelta(seconds=30),
                        maximum_attempts=5,
                    ),
                )
            except ActivityError as exc:  # the next round tries again
                workflow.logger.error("offline watch round failed: %s", exc.cause or exc)
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: False, timeout=timedelta(seconds=params.interval_s)
                )
        workflow.continue_as_new(params)


__all__ = [
    "ACTIVITY_ANNOUNCE_OFFLINE_CHARGERS",
    "CHARGER_OFFLINE_EVENTS_WORKFLOW",
    "CHARGER_OFFLINE_EVENTS_WORKFLOW_ID",
    "AnnounceOfflineInput",
    "AnnounceOfflineResult",
    "ChargerOfflineEventsWorkflow",
    "OfflineEventsInput",
]
