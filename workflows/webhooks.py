"""The outgoing webhooks' workflows (docs/webhooks.md).

``WebhookDispatcherWorkflow`` — one long-running instance (started by every worker with the
``USE_EXISTING`` policy, and by the service layer when an endpoint is created). It loops: the
``webhook_dispatch_events`` activity reads ``platform_events`` after the saved cursor (a row in
PostgreSQL, moved in the same transaction that inserts the deliveries, so a retried activity makes
no second delivery: ``(endpoint, event)`` is unique) and starts a ``WebhookDeliveryWorkflow`` per
new delivery; when it has caught up, ``webhook_wait_for_events`` LISTENs on ``polaris_events``
(with a poll as a fallback) until something new is committed, so a quiet platform writes nothing
to this history. It continues as new after ``iterations_per_run`` rounds.

``WebhookDeliveryWorkflow`` — one per attempt chain of a delivery (id from the delivery id). Attempt
1 at once, then durable timers following the retry schedule (exponential backoff for at least a
day); the last failed attempt fails the delivery. The activity reads the secret and the body from
PostgreSQL: neither enters this history.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

from workflows.policies import DATABASE_RETRY

with workflow.unsafe.imports_passed_through():
    from domain.webhooks import RetrySchedule
    from workflows.webhook_messages import (
        ACTIVITY_ATTEMPT_DELIVERY,
        ACTIVITY_DISPATCH_EVENTS,
        ACTIVITY_WAIT_FOR_EVENTS,
        SIGNAL_WAKE,
        WEBHOOK_DELIVERY_WORKFLOW,
        WEBHOOK_DISPATCHER_WORKFLOW,
        AttemptInput,
        AttemptResult,
        DeliveryInput,
        DispatcherInput,
        DispatchEventsInput,
        DispatchEventsResult,
        WaitForEventsInput,
    )

# PostgreSQL or Temporal hiccups: the activity is retried; an HTTP failure is not an error.
DB_RETRY = DATABASE_RETRY


@workflow.defn(name=WEBHOOK_DISPATCHER_WORKFLOW)
class WebhookDispatcherWorkflow:
    def __init__(self) -> None:
        self._wake = False

    @workflow.signal(name=SIGNAL_WAKE)
    def wake(self) -> None:
        """Look for events now (e.g. an endpoint was just created or re-enabled)."""
        self._wake = True

    @workflow.run
    async def run(self, params: DispatcherInput) -> None:
        for _ in range(params.iterations_per_run):
            self._wake = False
            try:
                result = await workflow.execute_activity(
                    ACTIVITY_DISPATCH_EVENTS,
                    DispatchEventsInput(name=params.name, batch_size=params.batch_size),
                    result_type=DispatchEventsResult,
                    start_to_close_timeout=timedelta(minutes=2),
                    retry_policy=DB_RETRY,
                )
            except ActivityError as exc:  # only a non-retryable error gets here
                workflow.logger.error("webhook dispatch round failed: %s", exc.cause or exc)
                result = DispatchEventsResult()
            if result.more or self._wake:
                continue
            # Caught up: listen (in an activity) until an event is committed after the cursor.
            wait = workflow.start_activity(
                ACTIVITY_WAIT_FOR_EVENTS,
                WaitForEventsInput(after_id=result.last_event_id, max_wait_s=params.wait_s),
                start_to_close_timeout=timedelta(seconds=params.wait_s + 60),
                heartbeat_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_attempts=1),
            )
            await workflow.wait_condition(lambda: self._wake or wait.done())  # noqa: B023
            if not wait.done():
                wait.cancel()
            # Its outcome does not matter (an error or a cancel just means: look again).
            with contextlib.suppress(ActivityError, asyncio.CancelledError):
                await wait
        workflow.continue_as_new(params)


@workflow.defn(name=WEBHOOK_DELIVERY_WORKFLOW)
class WebhookDeliveryWorkflow:
    @workflow.run
    async def run(self, params: DeliveryInput) -> AttemptResult:
        delays = RetrySchedule(**params.schedule.model_dump()).delays()
        attempts = len(delays) + 1
        for attempt in range(1, attempts + 1):
            result: AttemptResult = await workflow.execute_activity(
                ACTIVITY_ATTEMPT_DELIVERY,
                AttemptInput(
                    delivery_id=params.delivery_id,
                    chain=params.chain,
                    attempt=attempt,
                    final=attempt == attempts,
                ),
                result_type=AttemptResult,
                start_to_close_timeout=timedelta(seconds=params.timeout_s + 30),
                retry_policy=DB_RETRY,
            )
            if result.outcome != "failed":
                break
            if attempt < attempts:
                await workflow.sleep(timedelta(seconds=delays[attempt - 1]))
        return result


__all__ = ["WebhookDeliveryWorkflow", "WebhookDispatcherWorkflow"]
