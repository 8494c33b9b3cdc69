"""A tiny workflow that runs ``lago_send_usage_events`` the way the session workflow will."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.lago import (
        ACTIVITY_SEND_USAGE_EVENTS,
        SendUsageEventsInput,
        SendUsageEventsResult,
    )


@workflow.defn(name="TestSendUsageEvents")
class SendUsageEventsTestWorkflow:
    @workflow.run
    async def run(self, input: SendUsageEventsInput) -> SendUsageEventsResult:
        return await workflow.execute_activity(
            ACTIVITY_SEND_USAGE_EVENTS,
            input,
            result_type=SendUsageEventsResult,
            start_to_close_timeout=timedelta(seconds=30),
            heartbeat_timeout=timedelta(seconds=20),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(milliseconds=100),
                backoff_coefficient=1.5,
                maximum_interval=timedelta(milliseconds=500),
                non_retryable_error_types=["BillingMisconfigured", "NoLagoSubscription"],
            ),
        )
