"""MailDeliveryWorkflow: the relay that empties the auth service's mail outbox.

One long-running instance (workflow id ``mail-delivery``), started by every worker at startup
with the ``USE_EXISTING`` conflict policy, so however many workers run there is one relay. It
loops: run ``deliver_pending_mail`` (claims unsent ``auth.mail_outbox`` rows and sends them),
then sleep durably for ``interval_s`` (or until the ``deliver_now`` signal), and continues as
new after ``iterations_per_run`` rounds so its history stays short.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

MAIL_DELIVERY_WORKFLOW = "MailDelivery"
MAIL_DELIVERY_WORKFLOW_ID = "mail-delivery"
ACTIVITY_DELIVER_PENDING_MAIL = "deliver_pending_mail"
SIGNAL_DELIVER_NOW = "deliver_now"

# Raised (non-retryable) by the activity when POLARIS_SMTP_URL cannot be understood.
MAIL_MISCONFIGURED = "MailMisconfigured"


class MailDeliveryInput(BaseModel):
    interval_s: float = 5.0
    iterations_per_run: int = 500
    batch_size: int = 50


class DeliverMailInput(BaseModel):
    limit: int = 50


class DeliverMailResult(BaseModel):
    sent: int = 0  # handed to the SMTP server
    kept: int = 0  # no SMTP configured: kept in the outbox, marked delivered locally
    refused: int = 0  # the SMTP server refused the message for good (recorded, not retried)


@workflow.defn(name=MAIL_DELIVERY_WORKFLOW)
class MailDeliveryWorkflow:
    def __init__(self) -> None:
        self._wake = False

    @workflow.signal(name=SIGNAL_DELIVER_NOW)
    def deliver_now(self) -> None:
        """Skip the rest of the current sleep (e.g. right after a link was queued)."""
        self._wake = True

    @workflow.run
    async def run(self, params: MailDeliveryInput) -> None:
        for _ in range(params.iterations_per_run):
            self._wake = False
            try:
                await workflow.execute_activity(
                    ACTIVITY_DELIVER_PENDING_MAIL,
                    DeliverMailInput(limit=params.batch_size),
                    result_type=DeliverMailResult,
                    start_to_close_timeout=timedelta(minutes=2),
                    heartbeat_timeout=timedelta(seconds=30),
                    # A down SMTP server is retried with backoff inside this round; only a
                    # misconfiguration gives up, and the next round tries again.
                    retry_policy=RetryPolicy(
                        initial_interval=timedelta(seconds=2),
                        backoff_coefficient=2.0,
                        maximum_interval=timedelta(minutes=5),
                        maximum_attempts=0,
                        non_retryable_error_types=[MAIL_MISCONFIGURED],
                    ),
                )
            except ActivityError as exc:
                workflow.logger.error("mail delivery round failed: %s", exc.cause or exc)
            with contextlib.suppress(TimeoutError):  # the interval passed without a signal
                await workflow.wait_condition(
                    lambda: self._wake, timeout=timedelta(seconds=params.interval_s)
                )
        workflow.continue_as_new(params)
