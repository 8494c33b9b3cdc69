"""LocalListSyncWorkflow: keeps one charger's local authorization list in step with the cards;
LocalListReconcileWorkflow: finds the chargers that are out of step and wakes theirs.

A sync round (everything the charger hears goes through the gateway's ``send_charger_command``):

1. read the charger's state (connected? supported? pending requests?) — offline: record it and
   wait for the next signal (the gateway's connect trigger, or the reconciler);
2. once per charger, ``GetConfiguration`` of the local-list keys (list and message limits; a
   charger whose ``SupportedFeatureProfiles`` lacks ``LocalAuthListManagement`` is unsupported);
3. ``GetLocalListVersion``: ``-1`` or a NotSupported/NotImplemented CallError marks the charger
   unsupported (skipped from then on); a version other than the one we recorded means the
   charger's list is not the one we think: a Full update;
4. ``SendLocalList`` — Differential (listVersion + 1, changed entries, removals without
   idTagInfo) or Full, in chunks; each accepted request is recorded at once. ``VersionMismatch``
   or ``Failed`` on a differential update → a Full update instead; on a Full update → failed,
   retried at the next signal;
5. ``ClearCache`` when one was requested (a card reported lost).

Deterministic: the lists are computed by activities (``domain/local_list.py``); the workflow
only orders the steps. No I/O, no clock.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.policies import DATABASE_RETRY

with workflow.unsafe.imports_passed_through():
    from activities.local_lists import (
        CONFIG_KEYS,
        ChargerRef,
        ClearCacheDone,
        FinishInput,
        LocalListActivities,
        LocalListDispatch,
        PlanInput,
        RecordAcceptedInput,
        RecordConfigInput,
        SyncFacts,
    )
    from workflows import messages as msg
    from workflows.local_list_messages import (
        LOCAL_LIST_RECONCILE_WORKFLOW,
        LOCAL_LIST_SYNC_WORKFLOW,
        QUERY_LOCAL_LIST_STATUS,
        SIGNAL_LOCAL_LIST_SYNC,
        SIGNAL_LOCAL_LIST_WAKE,
        LocalListReconcileInput,
        LocalListSyncInput,
        LocalListSyncSignal,
        LocalListSyncStatus,
        LocalListWake,
    )

DB_TIMEOUT = timedelta(seconds=30)
DB_RETRY = DATABASE_RETRY
# A charger's answer (or its silence) is an answer, not a transient failure; ChargerOffline is
# retried a little (the charger may be reconnecting), then the round ends as offline.
COMMAND_START_TIMEOUT = timedelta(seconds=30)
COMMAND_CLOSE_TIMEOUT = timedelta(seconds=45)
COMMAND_TIMEOUT_S = 30.0
COMMAND_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=3,
    non_retryable_error_types=["ChargerTimeout", "ChargerCallError", "BadCommand"],
)
UNSUPPORTED_CODES = frozenset({"NotSupported", "NotImplemented"})


class Refused(Exception):
    """The command did not get an answer: ``kind`` is offline | timed_out | call_error."""

    def __init__(self, kind: str, detail: str, code: str | None = None) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.code = code


@workflow.defn(name=LOCAL_LIST_SYNC_WORKFLOW)
class LocalListSyncWorkflow:
    def __init__(self) -> None:
        self._wake = False
        self._rounds = 0
        self._last_outcome: str | None = None
        self._charge_box_id = ""

    @workflow.signal(name=SIGNAL_LOCAL_LIST_SYNC)
    def sync(self, signal: LocalListSyncSignal) -> None:
        self._wake = True

    @workflow.query(name=QUERY_LOCAL_LIST_STATUS)
    def status(self) -> LocalListSyncStatus:
        return LocalListSyncStatus(
            charge_box_id=self._charge_box_id, rounds=self._rounds, last_outcome=self._last_outcome
        )

    @workflow.run
    async def run(self, input: LocalListSyncInput) -> LocalListSyncStatus:
        self._charge_box_id = input.charge_box_id
        self._wake = self._wake or input.pending
        rounds_here = 0
        while True:
            if not self._wake:
                try:
                    await workflow.wait_condition(lambda: self._wake, timeout=input.idle_s)
                except TimeoutError:
                    return self.status()
            self._wake = False
            again = await self._round()
            self._rounds += 1
            rounds_here += 1
            if again:
                self._wake = True
            if self._last_outcome == "unknown_charger":
                return self.status()
            if rounds_here >= input.continue_as_new_after_rounds:
                workflow.continue_as_new(input.model_copy(update={"pending": self._wake}))

    # -- one round -------------------------------------------------------------------------

    async def _round(self) -> bool:
        """Serve what is pending; True when more arrived meanwhile (run another round)."""
        cb = self._charge_box_id
        facts: SyncFacts = await self._db(LocalListActivities.prepare, ChargerRef(charge_box_id=cb))
        if not facts.known:
            self._last_outcome = "unknown_charger"
            return False
        if not facts.connected or facts.task_queue is None:
            return await self._finish(FinishInput(charge_box_id=cb, status="offline"))
        list_work = facts.supported is not False and (
            facts.sync_pending or facts.full_requested or facts.never_synced
        )
        again = False
        if list_work:
            try:
                again = await self._sync_list(facts, facts.task_queue)
            except Refused as refused:
                status = "offline" if refused.kind == "offline" else refused.kind
                await self._finish(
                    FinishInput(charge_box_id=cb, status=status, error=refused.detail)
                )
                return False
        if facts.clear_cache_pending:
            try:
                answer = await self._command(facts.task_queue, "ClearCache", {})
                outcome = str(answer.get("status", "answered"))
            except Refused as refused:
                if refused.kind == "offline":
                    return False
                outcome = refused.code or refused.kind
            await self._db(
                LocalListActivities.record_clear_cache,
                ClearCacheDone(
                    charge_box_id=cb, served=facts.clear_cache_requested, status=outcome
                ),
            )
        return again

    async def _sync_list(self, facts: SyncFacts, queue: str) -> bool:
        cb = self._charge_box_id
        if not facts.config_known:
            try:
                answer = await self._command(queue, "GetConfiguration", {"key": CONFIG_KEYS})
                config = RecordConfigInput(charge_box_id=cb, values=_config_values(answer))
            except Refused as refused:
                if refused.kind != "call_error":
                    raise
                config = RecordConfigInput(charge_box_id=cb, error=refused.code)
            outcome = await self._db(LocalListActivities.record_config, config)
            if outcome.supported is False:
                return await self._unsupported(facts, outcome.reason or "not supported")
        try:
            version_answer = await self._command(queue, "GetLocalListVersion", {})
        except Refused as refused:
            if refused.kind == "call_error" and refused.code in UNSUPPORTED_CODES:
                return await self._unsupported(facts, f"GetLocalListVersion: {refused.code}")
            raise
        charger_version = version_answer.get("listVersion")
        if charger_version == -1:
            return await self._unsupported(facts, "GetLocalListVersion answered -1")
        full = facts.full_requested or charger_version != facts.list_version
        sent = 0
        while True:
            plan = await self._db(LocalListActivities.plan, PlanInput(charge_box_id=cb, full=full))
            result = await self._send(plan.requests, queue)
            sent += result[1]
            if result[0] == "accepted":
                break
            if result[0] == "unsupported":
                return await self._unsupported(facts, "SendLocalList: NotSupported")
            if full:
                return await self._finish(
                    FinishInput(charge_box_id=cb, status="failed", error=f"Full: {result[0]}")
                )
            full = True  # VersionMismatch or Failed on a differential update
        return await self._finish(
            FinishInput(
                charge_box_id=cb,
                status="sent" if sent else "in_step",
                served=facts.sync_requested,
                clear_full=facts.full_requested,
            )
        )

    async def _send(self, requests: list[Any], queue: str) -> tuple[str, int]:
        """Send the requests in order; ("accepted", n) or (the charger's refusal, n sent)."""
        for n, request in enumerate(requests):
            try:
                answer = await self._command(queue, "SendLocalList", request.payload())
            except Refused as refused:
                if refused.kind == "call_error" and refused.code in UNSUPPORTED_CODES:
                    return "unsupported", n
                raise
            status = str(answer.get("status"))
            if status == "NotSupported":
                return "unsupported", n
            if status != "Accepted":
                return status, n
            await self._db(
                LocalListActivities.record_accepted,
                RecordAcceptedInput(charge_box_id=self._charge_box_id, request=request),
            )
        return "accepted", len(requests)

    async def _unsupported(self, facts: SyncFacts, reason: str) -> bool:
        await self._finish(
            FinishInput(
                charge_box_id=self._charge_box_id,
                status="unsupported",
                unsupported_reason=reason,
                served=facts.sync_requested,
                clear_full=facts.full_requested,
            )
        )
        return False

    async def _finish(self, input: FinishInput) -> bool:
        self._last_outcome = input.status
        result = await self._db(LocalListActivities.finish, input)
        # Only a round that got through runs again at once; a failed one waits for a signal.
        return result.still_pending and input.status in ("in_step", "sent")

    # -- plumbing --------------------------------------------------------------------------

    async def _db(self, activity: Any, arg: Any) -> Any:
        return await workflow.execute_activity_method(
            activity, arg, start_to_close_timeout=DB_TIMEOUT, retry_policy=DB_RETRY
        )

    async def _command(
        self, queue: str, action: msg.ChargerAction, payload: dict[str, object]
    ) -> dict[str, object]:
        try:
            answer: msg.ChargerCommandResult = await workflow.execute_activity(
                msg.ACTIVITY_SEND_CHARGER_COMMAND,
                msg.ChargerCommandInput(
                    charge_box_id=self._charge_box_id,
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
            raise _refused(action, err) from None
        return answer.payload


def _refused(action: str, err: ActivityError) -> Refused:
    cause = err.cause
    if isinstance(cause, ApplicationError):
        if cause.type == "ChargerTimeout":
            return Refused("timed_out", f"{action}: {cause.message}")
        if cause.type == "ChargerCallError":
            details = cause.details[0] if cause.details else {}
            code = details.get("code") if isinstance(details, dict) else None
            return Refused("call_error", f"{action}: {cause.message}", code=code)
        if cause.type == "ChargerOffline":
            return Refused("offline", f"{action}: {cause.message}")
        return Refused("failed", f"{action}: {cause.type}: {cause.message}")
    # Nobody polled the gateway's queue (its process is gone) or the attempt timed out.
    return Refused("offline", f"{action}: {cause or err}")


def _config_values(answer: dict[str, object]) -> dict[str, str]:
    keys = answer.get("configurationKey")
    values: dict[str, str] = {}
    if isinstance(keys, list):
        for item in keys:
            if isinstance(item, dict) and "key" in item and item.get("value") is not None:
                values[str(item["key"])] = str(item["value"])
    return values


@workflow.defn(name=LOCAL_LIST_RECONCILE_WORKFLOW)
class LocalListReconcileWorkflow:
    """One per task queue: every ``interval_s`` (or at once when woken by a card change or an
    operator) signal the sync workflow of every connected charger with something to do."""

    def __init__(self) -> None:
        self._wake = False
        self._reason = "interval"

    @workflow.signal(name=SIGNAL_LOCAL_LIST_WAKE)
    def wake(self, signal: LocalListWake) -> None:
        self._wake = True
        self._reason = signal.reason

    @workflow.run
    async def run(self, input: LocalListReconcileInput) -> None:
        self._wake = self._wake or input.pending
        for _ in range(input.continue_as_new_after):
            if not self._wake:
                try:
                    await workflow.wait_condition(lambda: self._wake, timeout=input.interval_s)
                except TimeoutError:
                    self._reason = "interval"
            reason = self._reason
            self._wake = False
            await workflow.execute_activity_method(
                LocalListDispatch.dispatch,
                LocalListSyncSignal(reason=reason),
                start_to_close_timeout=timedelta(minutes=5),
                retry_policy=DB_RETRY,
            )
        workflow.continue_as_new(input.model_copy(update={"pending": self._wake}))


__all__ = ["LocalListReconcileWorkflow", "LocalListSyncWorkflow"]
