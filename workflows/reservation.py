"""ReservationWorkflow: one per reservation (``reservation:<id>``), from creation to its end.

1. wait (a durable timer) until ``lead_s`` before the start — or a cancel, or a session;
2. ``ReserveNow`` through the gateway's ``send_charger_command`` (the operations log records
   it): Accepted → confirmed; Occupied / Faulted / Rejected / Unavailable → failed with the
   driver's reason; a charger that is offline is tried every ``offline_retry_s`` until the start,
   then the reservation fails ("the charger was offline ...");
3. wait until the no-show deadline (``no_show_s`` after the start, at most the end) — or a
   cancel, or a session: a StartTransaction the gateway joined to this reservation (signal
   ``reservation_join``, through the outbox relay) marks it used with the session's workflow id;
   a cancel (the row is already cancelled by the service) tells the charger
   ``CancelReservation``; the deadline expires it (and tells the charger too).

The ``reservations`` row is the source of truth: every status change is a guarded update in an
activity, so a cancel whose signal was lost is still seen at the next step. A run started by the
relay after the workflow ended (a late StartTransaction) only records the join.
Deterministic: no I/O, no clock but ``workflow.now()``.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.policies import DATABASE_RETRY

with workflow.unsafe.imports_passed_through():
    from activities.reservations import (
        MoveInput,
        MoveResult,
        ReservationActivities,
        ReservationFacts,
        ReservationRef,
    )
    from domain.reservations import (
        LIVE,
        OFFLINE_REASON,
        Window,
        no_show_at,
        refusal_reason,
        reserve_now_at,
    )
    from workflows import messages as msg
    from workflows.reservation_messages import (
        QUERY_RESERVATION_STATUS,
        RESERVATION_WORKFLOW,
        SIGNAL_RESERVATION_CANCEL,
        SIGNAL_RESERVATION_JOIN,
        ReservationCancel,
        ReservationInput,
        ReservationJoin,
        ReservationState,
    )

DB_TIMEOUT = timedelta(seconds=30)
DB_RETRY = DATABASE_RETRY
# The charger's answer (or silence) is an answer; an offline charger is retried by the
# workflow's own loop (until the start), not by the activity's retry policy.
COMMAND_START_TIMEOUT = timedelta(seconds=30)
COMMAND_CLOSE_TIMEOUT = timedelta(seconds=45)
COMMAND_TIMEOUT_S = 30.0
COMMAND_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=2,
    non_retryable_error_types=["ChargerTimeout", "ChargerCallError", "BadCommand"],
)


class _NoAnswer(Exception):
    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind  # offline | timed_out | call_error | failed
        self.detail = detail


@workflow.defn(name=RESERVATION_WORKFLOW)
class ReservationWorkflow:
    def __init__(self) -> None:
        self._cancel = False
        self._join: ReservationJoin | None = None
        self._facts = ReservationFacts(found=False)
        self._status = "starting"
        self._reason: str | None = None
        self._held = False  # the charger accepted ReserveNow (a cancel must tell it)
        self._attempts = 0

    @workflow.signal(name=SIGNAL_RESERVATION_CANCEL)
    def cancel(self, signal: ReservationCancel) -> None:
        self._cancel = True

    @workflow.signal(name=SIGNAL_RESERVATION_JOIN)
    def join(self, signal: ReservationJoin) -> None:
        if self._join is None:
            self._join = signal

    @workflow.query(name=QUERY_RESERVATION_STATUS)
    def status(self) -> ReservationState:
        return ReservationState(
            reservation_id=self._facts.reservation_id,
            status=self._status,
            reason=self._reason,
            reserve_now_attempts=self._attempts,
        )

    @workflow.run
    async def run(self, input: ReservationInput) -> ReservationState:
        self._input = input
        facts = await self._load(input.reservation_id)
        if not facts.found:
            self._status = "unknown"
            return self.status()
        self._status = facts.status
        self._held = facts.sent_to_charger
        if facts.status in LIVE:
            assert facts.starts_at is not None and facts.ends_at is not None
            window = Window(facts.starts_at, facts.ends_at)
            if facts.status == "pending":
                await self._until(reserve_now_at(window.starts_at, timedelta(seconds=input.lead_s)))
                if not self._woken():
                    await self._reserve_now(window)
            if self._status in LIVE and not self._woken():
                await self._until(no_show_at(window, timedelta(seconds=input.no_show_s)))
        await self._settle()
        return self.status()

    # -- steps ------------------------------------------------------------------------------

    async def _reserve_now(self, window: Window) -> None:
        while True:
            facts = await self._load(self._input.reservation_id)
            if facts.status != "pending":
                self._status = facts.status
                return
            try:
                if facts.task_queue is None:
                    raise _NoAnswer("offline", "the charger is not connected")
                self._attempts += 1
                answer = await self._command(
                    facts.task_queue,
                    "ReserveNow",
                    {
                        "connectorId": facts.connector_id or 0,
                        "expiryDate": _ocpp_time(
                            no_show_at(window, timedelta(seconds=self._input.no_show_s))
                        ),
                        "idTag": facts.id_tag,
                        "reservationId": facts.ocpp_reservation_id,
                    },
                )
            except _NoAnswer as no_answer:
                if no_answer.kind == "offline":
                    retry_at = workflow.now() + timedelta(seconds=self._input.offline_retry_s)
                    if retry_at < window.starts_at:
                        await self._until(retry_at)
                        if self._woken():
                            return
                        continue
                    await self._move("failed", OFFLINE_REASON)
                    return
                reason = (
                    "the charger does not support reservations"
                    if no_answer.kind == "call_error"
                    else "the charger did not answer the reservation"
                )
                await self._move("failed", reason)
                return
            status = str(answer.get("status"))
            if status == "Accepted":
                self._held = True
                await self._move("confirmed")
            else:
                await self._move("failed", refusal_reason(status))
            return

    async def _settle(self) -> None:
        """After the waits: a session joined, a cancel, or the deadline."""
        if self._join is not None:
            await self._move(
                "used",
                session_workflow_id=self._join.session_workflow_id,
                transaction_id=self._join.transaction_id,
            )
            return
        if self._status in LIVE and not self._cancel:
            # The no-show deadline passed with no session.
            result = await self._move("expired", "nobody started charging in time")
            if result.moved:
                if self._held:
                    await self._tell_cancel()
                return
            # Not moved: cancelled meanwhile (its signal lost, or still on its way).
        facts = await self._load(self._input.reservation_id)
        self._status = facts.status
        if facts.status == "cancelled" and (self._held or facts.sent_to_charger):
            await self._tell_cancel()

    async def _tell_cancel(self) -> None:
        facts = await self._load(self._input.reservation_id)
        if facts.task_queue is None:
            return  # the charger's own expiryDate ends it
        try:
            await self._command(
                facts.task_queue,
                "CancelReservation",
                {"reservationId": facts.ocpp_reservation_id},
            )
        except _NoAnswer as no_answer:
            workflow.logger.warning("CancelReservation not delivered: %s", no_answer.detail)
        self._held = False

    # -- plumbing ---------------------------------------------------------------------------

    def _woken(self) -> bool:
        return self._cancel or self._join is not None

    async def _until(self, at: datetime) -> None:
        """Sleep until ``at`` (a durable timer), or less when a cancel or a session arrives."""
        delay = (at - workflow.now()).total_seconds()
        if delay <= 0 or self._woken():
            return
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(self._woken, timeout=delay)

    async def _load(self, reservation_id: str) -> ReservationFacts:
        self._facts = await workflow.execute_activity_method(
            ReservationActivities.load,
            ReservationRef(reservation_id=reservation_id),
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
        )
        return self._facts

    async def _move(
        self,
        to: str,
        reason: str | None = None,
        *,
        session_workflow_id: str | None = None,
        transaction_id: int | None = None,
    ) -> MoveResult:
        result: MoveResult = await workflow.execute_activity_method(
            ReservationActivities.move,
            MoveInput(
                reservation_id=self._input.reservation_id,
                to=to,
                reason=reason,
                session_workflow_id=session_workflow_id,
                transaction_id=transaction_id,
            ),
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
        )
        self._status = result.status
        if result.moved:
            self._reason = reason
        return result

    async def _command(
        self, queue: str, action: msg.ChargerAction, payload: dict[str, object]
    ) -> dict[str, Any]:
        try:
            answer: msg.ChargerCommandResult = await workflow.execute_activity(
                msg.ACTIVITY_SEND_CHARGER_COMMAND,
                msg.ChargerCommandInput(
                    charge_box_id=self._facts.charge_box_id,
                    action=action,
                    payload=payload,
                    timeout_s=COMMAND_TIMEOUT_S,
                ),
                task_queue=queue,
                result_type=msg.ChargerCommandResult,
                schedule_to_start_timeout=COMMAND_START_TIMEOUT,
                start_to_close_timeout=COMMAND_CLOSE_TIMEOUT,
                retry_policy=COMMAND_RETRY,
            )
        except ActivityError as err:
            raise _no_answer(action, err) from None
        return dict(answer.payload)


def _no_answer(action: str, err: ActivityError) -> _NoAnswer:
    cause = err.cause
    if isinstance(cause, ApplicationError):
        kinds = {
            "ChargerTimeout": "timed_out",
            "ChargerCallError": "call_error",
            "ChargerOffline": "offline",
        }
        return _NoAnswer(kinds.get(cause.type or "", "failed"), f"{action}: {cause.message}")
    # Nobody polled the gateway's queue (its process is gone): the charger is unreachable.
    return _NoAnswer("offline", f"{action}: {cause or err}")


def _ocpp_time(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


__all__ = ["ReservationWorkflow"]
