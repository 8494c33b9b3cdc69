"""IdleFeeWorkflow: the idle fee of one stopped session (id ``idle-fee:<session workflow id>``).

Fed only through the gateway's event registry: ``gateway/subscribers.py`` subscribes it to
``connector_status_after_stop``, so the first status of the connector after the session's
StopTransaction starts it and every later one is a signal (``idle_status``). It never touches
the charging session.

1. ``idle_fee_context`` reads the session's idle terms (the tariff version it started under)
   and its stop time; no idle price → ends with ``no_idle_fee``.
2. The idle time runs from the stop (the charger's timestamp) to the first status that shows the
   connector free, as the charger timestamped it (``ENDING_STATUSES``: Available/Reserved, a new
   session's Preparing, or Unavailable/Faulted — the charger can no longer tell). It does not
   wait forever: when the fee reaches the cap (``domain.idle_fee.seconds_to_cap``) the cap is
   billed at once; with no cap the watch ends after ``watch_s`` (24 h). Either way, a charger
   that is offline then is billed only up to when it was last seen (``charger_offline``).
   A car gone before the stop (``unplugged_before_stop``) pays nothing.
3. The fee (``domain.idle_fee.idle_fee``, computed here: pure and deterministic) is recorded once
   in ``idle_fees`` (``idle_fee_record``: the first record wins) and, when not zero, sent to Lago
   as a one-off invoice with an ``idle_fee`` add-on fee (``idle_fee_send``: at most once, see
   ``activities/idle_fee.py``).

Deterministic: no I/O, timers on workflow time, events deduplicated by ``event_id``.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

from workflows.policies import DATABASE_RETRY

with workflow.unsafe.imports_passed_through():
    from domain.idle_fee import idle_fee, seconds_to_cap
    from workflows.idle_fee_messages import (
        ACTIVITY_CHARGER_SEEN,
        ACTIVITY_IDLE_CONTEXT,
        ACTIVITY_RECORD,
        ACTIVITY_SEND,
        ENDING_STATUSES,
        IDLE_FEE_WORKFLOW,
        QUERY_IDLE_FEE_STATE,
        SIGNAL_IDLE_STATUS,
        ChargerSeen,
        EndReason,
        IdleFeeContext,
        IdleFeeInput,
        IdleFeeLineOut,
        IdleFeeOutcome,
        IdleFeeState,
        IdleStatus,
        RecordIdleFeeInput,
        SendIdleFeeInput,
        SendIdleFeeResult,
    )
    from workflows.session_support import LAGO_HEARTBEAT, LAGO_RETRY, LAGO_TIMEOUT

DB_TIMEOUT = timedelta(seconds=30)


@workflow.defn(name=IDLE_FEE_WORKFLOW)
class IdleFeeWorkflow:
    def __init__(self) -> None:
        self._last_event = 0
        self._statuses: list[str] = []
        self._end: tuple[datetime, EndReason] | None = None
        self._phase: str = "starting"
        self._end_reason: str | None = None
        self._amount: int | None = None

    @workflow.run
    async def run(self, input: IdleFeeInput) -> IdleFeeOutcome:
        context: IdleFeeContext = await workflow.execute_activity(
            ACTIVITY_IDLE_CONTEXT,
            input.session_workflow_id,
            result_type=IdleFeeContext,
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DATABASE_RETRY,
        )
        if not context.applies or context.terms is None or context.stopped_at is None:
            self._phase = "done"
            return IdleFeeOutcome(status="no_idle_fee", reason=context.reason)
        terms, stopped_at = context.terms, context.stopped_at

        if context.unplugged_before_stop:
            ended_at, reason = stopped_at, "unplugged_before_stop"
        else:
            ended_at, reason = await self._wait_for_the_end(input, context)

        idle_s = int((ended_at - stopped_at).total_seconds())
        fee = idle_fee(terms, idle_s=idle_s)
        self._phase, self._end_reason = "billing", reason
        line: IdleFeeLineOut = await workflow.execute_activity(
            ACTIVITY_RECORD,
            RecordIdleFeeInput(
                session_workflow_id=input.session_workflow_id,
                charge_box_id=input.charge_box_id,
                connector_id=input.connector_id,
                tariff_version_id=context.tariff_version_id,
                stopped_at=stopped_at,
                ended_at=max(ended_at, stopped_at),
                end_reason=reason,
                fee=fee,
            ),
            result_type=IdleFeeLineOut,
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DATABASE_RETRY,
        )
        self._amount = line.amount_minor
        outcome = IdleFeeOutcome(
            status="recorded",
            end_reason=line.end_reason,
            idle_s=line.idle_s,
            amount_minor=line.amount_minor,
            currency=line.currency,
        )
        if line.amount_minor > 0:
            try:
                sent: SendIdleFeeResult = await workflow.execute_activity(
                    ACTIVITY_SEND,
                    SendIdleFeeInput(session_workflow_id=input.session_workflow_id),
                    result_type=SendIdleFeeResult,
                    start_to_close_timeout=LAGO_TIMEOUT,
                    heartbeat_timeout=LAGO_HEARTBEAT,
                    retry_policy=LAGO_RETRY,
                )
            except ActivityError as exc:  # refused for good: the line stays unsent, listed
                workflow.logger.error("idle fee of %s not sent: %s", input.session_workflow_id, exc)
                outcome.status = "lago_refused"
            else:
                if sent.lago_invoice_id is not None:
                    outcome.status = "billed"
                    outcome.lago_invoice_id = sent.lago_invoice_id
        self._phase = "done"
        return outcome

    async def _wait_for_the_end(
        self, input: IdleFeeInput, context: IdleFeeContext
    ) -> tuple[datetime, EndReason]:
        assert context.terms is not None and context.stopped_at is not None
        self._phase = "waiting"
        to_cap = seconds_to_cap(context.terms)
        limit_s = input.watch_s if to_cap is None else min(to_cap, input.watch_s)
        deadline = context.stopped_at + timedelta(seconds=limit_s)
        remaining = (deadline - workflow.now()).total_seconds()
        if self._end is None and remaining > 0:
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: self._end is not None, timeout=timedelta(seconds=remaining)
                )
        if self._end is not None and self._end[0] < deadline:
            return self._end
        # The limit came first (or the end the charger reported lies beyond it).
        seen: ChargerSeen = await workflow.execute_activity(
            ACTIVITY_CHARGER_SEEN,
            input.charge_box_id,
            result_type=ChargerSeen,
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DATABASE_RETRY,
        )
        if not seen.connected and seen.last_seen_at is not None and seen.last_seen_at < deadline:
            return max(context.stopped_at, seen.last_seen_at), "charger_offline"
        reached: EndReason = (
            "cap_reached" if to_cap is not None and to_cap <= limit_s else ("watch_expired")
        )
        return deadline, reached

    @workflow.signal(name=SIGNAL_IDLE_STATUS)
    def idle_status(self, event: IdleStatus) -> None:
        if event.event_id <= self._last_event:
            return  # a redelivery
        self._last_event = event.event_id
        self._statuses.append(event.status)
        reason = ENDING_STATUSES.get(event.status)
        if reason is not None and self._end is None:
            self._end = (event.at, reason)

    @workflow.query(name=QUERY_IDLE_FEE_STATE)
    def state(self) -> IdleFeeState:
        return IdleFeeState(
            phase=self._phase,
            statuses=list(self._statuses),
            end_reason=self._end_reason,
            amount_minor=self._amount,
        )


__all__ = ["IdleFeeWorkflow"]
