"""ChargerOfflineWatchWorkflow: tell the operators' inbox about chargers offline for too long.

One long-running instance (workflow id ``charger-offline-watch``), started by every worker at
startup with the ``USE_EXISTING`` conflict policy, like the mail relay. It loops: run
``notify_offline_chargers`` (one query and idempotent inserts: the activity decides, from
``chargers.last_seen_at``/``connected`` and ``POLARIS_NOTIFY_CHARGER_OFFLINE_AFTER_MIN``, which
chargers are offline for too long, and writes one notification per offline *episode*), sleeps
``interval_s`` durably, and continues as new after ``iterations_per_run`` rounds.

It is independent of the ``charger.offline`` platform event (recorded by its own detector): a
notification is keyed by the charger and the ``last_seen_at`` the episode began with, so
running this twice, in two workers, or after a crash, adds nothing.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

CHARGER_OFFLINE_WATCH_WORKFLOW = "ChargerOfflineWatch"
CHARGER_OFFLINE_WATCH_WORKFLOW_ID = "charger-offline-watch"
ACTIVITY_NOTIFY_OFFLINE_CHARGERS = "notify_offline_chargers"


class ChargerOfflineWatchInput(BaseModel):
    interval_s: float = 60.0
    iterations_per_run: int = 500


class NotifyOfflineChargersInput(BaseModel):
    # None: POLARIS_NOTIFY_CHARGER_OFFLINE_AFTER_MIN (the worker's settings).
    after_min: float | None = None


class NotifyOfflineChargersResult(BaseModel):
    offline: list[str] = []  # chargers offline for longer than the threshold
    notified: list[str] = []  # of which a notification was written now (a new episode)


@workflow.defn(name=CHARGER_OFFLINE_WATCH_WORKFLOW)
class ChargerOfflineWatchWorkflow:
    @workflow.run
    async def run(self, params: ChargerOfflineWatchInput) -> None:
        for _ in range(params.iterations_per_run):
            try:
                await workflow.execute_activity(
                    ACTIVITY_NOTIFY_OFFLINE_CHARGERS,
                    NotifyOfflineChargersInput(),
                    result_type=NotifyOfflineChargersResult,
                    start_to_close_timeout=timedelta(seconds=30),
                    retry_policy=RetryPolicy(
                        initial_interval=timedelta(seconds=2),
                        backoff_coefficient=2.0,
                        maximum_interval=timedelta(seconds=30),
                        maximum_attempts=5,
                    ),
                )
            except ActivityError as exc:  # the next round tries again
                workflow.logger.warning("offline check failed: %s", exc.cause or exc)
            await workflow.sleep(timedelta(seconds=params.interval_s))
        workflow.continue_as_new(params)


__all__ = [
    "ACTIVITY_NOTIFY_OFFLINE_CHARGERS",
    "CHARGER_OFFLINE_WATCH_WORKFLOW",
    "CHARGER_OFFLINE_WATCH_WORKFLOW_ID",
    "ChargerOfflineWatchInput",
    "ChargerOfflineWatchWorkflow",
    "NotifyOfflineChargersInput",
    "NotifyOfflineChargersResult",
]
