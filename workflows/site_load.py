"""SiteLoadWorkflow: one per site (``site-load:<site id>``); divides the site's limit among its
active sessions and keeps every charger's profiles in step with the plan.

A round (woken by a signal: a transaction started or stopped, a charger connected, the operator
changed the limit):

1. ``site_load_plan`` recomputes the plan from PostgreSQL (``domain/load.py``), stores it, and
   returns only the profiles the chargers do not have yet (planned ≠ acknowledged): after a
   worker restart nothing acknowledged is sent again;
2. each profile goes out as ``SetChargingProfile`` (TxProfile for the running transaction, or
   the charger's TxDefaultProfile with the site's safe limit) through the gateway's
   ``send_charger_command`` (which writes the operations log), all chargers at once;
3. ``site_load_record`` stores each answer: accepted → acknowledged.

A TxProfile the charger rejects (it may not know the transaction yet, its StartTransaction.conf
still on the way) gets up to ``REJECTED_RETRIES`` more rounds, ``REJECTED_RETRY_S`` apart.
Signals arriving during a round coalesce into one more round. Deterministic: no I/O, no clock.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.policies import DATABASE_RETRY

with workflow.unsafe.imports_passed_through():
    from workflows import messages as msg
    from workflows.site_load_messages import (
        ACTIVITY_LOAD_PLAN,
        ACTIVITY_LOAD_RECORD,
        QUERY_SITE_LOAD_STATUS,
        SIGNAL_SITE_LOAD,
        SITE_LOAD_WORKFLOW,
        LoadPlan,
        PlanInput,
        ProfileCommand,
        ProfileOutcome,
        SiteLoadInput,
        SiteLoadSignal,
        SiteLoadStatus,
    )

DB_TIMEOUT = timedelta(seconds=30)
DB_RETRY = DATABASE_RETRY
COMMAND_START_TIMEOUT = timedelta(seconds=30)
COMMAND_CLOSE_TIMEOUT = timedelta(seconds=45)
COMMAND_TIMEOUT_S = 30.0
COMMAND_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=3,
    non_retryable_error_types=["ChargerTimeout", "ChargerCallError", "BadCommand"],
)
REJECTED_RETRIES = 3
REJECTED_RETRY_S = 5.0


@workflow.defn(name=SITE_LOAD_WORKFLOW)
class SiteLoadWorkflow:
    def __init__(self) -> None:
        self._wake = False
        self._reason = "changed"
        self._site_id = 0
        self._rounds = 0
        self._sent = 0
        self._last_outcome: str | None = None

    @workflow.signal(name=SIGNAL_SITE_LOAD)
    def changed(self, signal: SiteLoadSignal) -> None:
        self._wake = True
        self._reason = signal.reason

    @workflow.query(name=QUERY_SITE_LOAD_STATUS)
    def status(self) -> SiteLoadStatus:
        return SiteLoadStatus(
            site_id=self._site_id,
            rounds=self._rounds,
            sent=self._sent,
            last_outcome=self._last_outcome,
        )

    @workflow.run
    async def run(self, input: SiteLoadInput) -> SiteLoadStatus:
        self._site_id = input.site_id
        self._wake = self._wake or input.pending
        rounds_here = 0
        rejected_rounds = 0
        while True:
            if not self._wake:
                try:
                    await workflow.wait_condition(lambda: self._wake, timeout=input.idle_s)
                except TimeoutError:
                    return self.status()
            self._wake = False
            plan: LoadPlan = await workflow.execute_activity(
                ACTIVITY_LOAD_PLAN,
                PlanInput(site_id=self._site_id, reason=self._reason),
                result_type=LoadPlan,
                start_to_close_timeout=DB_TIMEOUT,
                retry_policy=DB_RETRY,
            )
            rounds_here += 1
            if not plan.known:
                self._rounds += 1
                self._last_outcome = "unknown_site"
                return self.status()
            outcomes = await asyncio.gather(*(self._send(c) for c in plan.commands))
            # Counted once the round's answers are recorded (a query then sees a whole round).
            self._rounds += 1
            self._sent += len(plan.commands)
            rejected = [o for o in outcomes if o.status == "rejected"]
            self._last_outcome = _summary(outcomes)
            if rejected and rejected_rounds < REJECTED_RETRIES and not self._wake:
                rejected_rounds += 1
                await workflow.sleep(REJECTED_RETRY_S)
                self._wake = True
            elif not rejected:
                rejected_rounds = 0
            if rounds_here >= input.continue_as_new_after_rounds:
                workflow.continue_as_new(input.model_copy(update={"pending": self._wake}))

    async def _send(self, command: ProfileCommand) -> ProfileOutcome:
        status, error = "accepted", None
        try:
            answer: msg.ChargerCommandResult = await workflow.execute_activity(
                msg.ACTIVITY_SEND_CHARGER_COMMAND,
                msg.ChargerCommandInput(
                    charge_box_id=command.charge_box_id,
                    action=command.action(),
                    payload=command.payload(),
                    timeout_s=COMMAND_TIMEOUT_S,
                ),
                task_queue=command.task_queue,
                result_type=msg.ChargerCommandResult,
                schedule_to_start_timeout=COMMAND_START_TIMEOUT,
                start_to_close_timeout=COMMAND_CLOSE_TIMEOUT,
                retry_policy=COMMAND_RETRY,
            )
            answered = str(answer.payload.get("status", ""))
            if answered != "Accepted" and not (command.limit is None and answered == "Unknown"):
                status, error = "rejected", f"{command.action()}: {answered}"
        except ActivityError as err:
            status, error = _failure(command, err)
        outcome = ProfileOutcome(site_id=self._site_id, command=command, status=status, error=error)
        await workflow.execute_activity(
            ACTIVITY_LOAD_RECORD,
            outcome,
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
        )
        return outcome


def _failure(command: ProfileCommand, err: ActivityError) -> tuple[str, str]:
    cause = err.cause
    what = command.action()
    if isinstance(cause, ApplicationError):
        if cause.type == "ChargerOffline":
            return "offline", f"{what}: {cause.message}"
        return "failed", f"{what}: {cause.type}: {cause.message}"
    # Nobody polled the gateway's queue (its process is gone) or the attempt timed out.
    return "offline", f"{what}: {cause or err}"


def _summary(outcomes: list[ProfileOutcome]) -> str:
    if not outcomes:
        return "in_step"
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))


__all__ = ["SiteLoadWorkflow"]
