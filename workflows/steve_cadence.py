"""SteveCadenceWorkflow: Adaptive Cadence, the durable scheduler of SteVe sync runs
(docs/steve.md; the transition rule is ``domain/steve_cadence.py``).

One workflow (id ``steve-cadence``). It runs a ``SyncRunWorkflow`` as a child, evaluates the
result (busy: the run changed something, or a charger was active meanwhile), picks the next
interval from the mode, and sleeps until then. Signals:

- ``steve_activity`` (the gateway's ``charger_activity`` event, through the outbox and the event
  registry, ``gateway/subscribers.py``) and ``steve_manual`` (an operator's trigger) return to
  active at once, and bring the next run forward to at most the active interval from now.

History stays bounded: continue-as-new after ``continue_as_new_after`` runs (or when Temporal
suggests it), carrying the mode, the streak and the last activity.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from domain.steve_cadence import CadenceRules, CadenceState, evaluate, on_activity, start
    from workflows.steve_messages import (
        CADENCE_WORKFLOW,
        QUERY_CADENCE,
        SIGNAL_CADENCE_ACTIVITY,
        SIGNAL_CADENCE_MANUAL,
        SYNC_RUN_WORKFLOW,
        CadenceActivity,
        CadenceInput,
        CadenceStatus,
        SyncRunInput,
        SyncRunSummary,
    )


@workflow.defn(name=CADENCE_WORKFLOW)
class SteveCadenceWorkflow:
    def __init__(self) -> None:
        self._input = CadenceInput()
        self._state: CadenceState | None = None
        self._rules = CadenceRules()
        self._next_at: datetime | None = None
        self._activity_pending = False
        self._woken = False
        self._last_event_id = 0

    # -- signals and query ------------------------------------------------------------------

    def _wake(self, at: datetime | None) -> None:
        now = workflow.now()
        when = min(at or now, now)
        if self._state is None:
            self._state = start(when)
        self._state = on_activity(self._state, when)
        self._activity_pending = True
        self._woken = True

    @workflow.signal(name=SIGNAL_CADENCE_ACTIVITY)
    def activity(self, signal: CadenceActivity) -> None:
        if signal.event_id:
            # Rows of one workflow are delivered in order: an older id is a redelivery.
            if signal.event_id <= self._last_event_id:
                return
            self._last_event_id = signal.event_id
        self._wake(signal.at)

    @workflow.signal(name=SIGNAL_CADENCE_MANUAL)
    def manual(self, signal: CadenceActivity) -> None:
        self._wake(None)

    @workflow.query(name=QUERY_CADENCE)
    def status(self) -> CadenceStatus:
        state = self._state or start(workflow.now())
        return CadenceStatus(
            mode=state.mode,
            interval_s=int(self._rules.interval(state.mode).total_seconds()),
            idle_streak=state.idle_streak,
            last_activity_at=state.last_activity_at,
            next_run_at=self._next_at,
            runs=self._input.runs,
            last_run_id=self._input.last_run_id,
            last_run_status=self._input.last_run_status,
        )

    # -- the loop ---------------------------------------------------------------------------

    @workflow.run
    async def run(self, input: CadenceInput) -> None:
        self._input = input
        self._rules = CadenceRules(
            active=timedelta(seconds=input.active_s),
            idle=timedelta(seconds=input.idle_s),
            dormant=timedelta(seconds=input.dormant_s),
            demote_after=input.demote_after,
            dormant_after=timedelta(seconds=input.dormant_after_s),
        )
        now = workflow.now()
        carried = CadenceState(input.mode, input.idle_streak, input.last_activity_at or now)
        # A signal that arrived before the first task keeps its promotion.
        self._state = (
            carried if self._state is None else on_activity(carried, self._state.last_activity_at)
        )
        runs_here = 0
        if input.run_now:
            await self._run_once()
            runs_here += 1
        else:
            self._next_at = now + self._rules.interval(self._state.mode)
        while True:
            assert self._next_at is not None
            self._woken = False
            remaining = (self._next_at - workflow.now()).total_seconds()
            if remaining > 0:
                with contextlib.suppress(TimeoutError):
                    await workflow.wait_condition(lambda: self._woken, timeout=remaining)
            if self._woken:
                # Back to active: the next run is at most one active interval away.
                soonest = workflow.now() + self._rules.active
                self._next_at = min(self._next_at, soonest)
                continue
            await self._run_once()
            runs_here += 1
            if (
                runs_here >= input.continue_as_new_after
                or workflow.info().is_continue_as_new_suggested()
            ):
                state = self._state
                assert state is not None
                workflow.continue_as_new(
                    self._input.model_copy(
                        update={
                            "mode": state.mode,
                            "idle_streak": state.idle_streak,
                            "last_activity_at": state.last_activity_at,
                            "run_now": False,
                        }
                    )
                )

    async def _run_once(self) -> None:
        started = workflow.now()
        self._activity_pending = False
        busy = False
        try:
            summary: SyncRunSummary = await workflow.execute_child_workflow(
                SYNC_RUN_WORKFLOW,
                SyncRunInput(trigger="cadence"),
                id=f"steve-sync:cadence:{int(started.timestamp() * 1000)}",
                result_type=SyncRunSummary,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            )
            busy = summary.changes > 0
            self._input.last_run_id = summary.run_id
            self._input.last_run_status = summary.status
        except ChildWorkflowError as err:
            workflow.logger.warning("SteVe sync run failed: %s", err)
            self._input.last_run_status = "failed"
        self._input.runs += 1
        busy = busy or self._activity_pending
        self._activity_pending = False
        assert self._state is not None
        self._state = evaluate(self._state, busy=busy, at=workflow.now(), rules=self._rules)
        self._next_at = workflow.now() + self._rules.interval(self._state.mode)
