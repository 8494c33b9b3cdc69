"""ChargingSessionWorkflow: one EV charging session, from tap or remote start to billing.

The workflow is the imperative shell around :func:`domain.session.transition`: handlers turn
the gateway's signals and the API's updates into domain events; the main loop performs the
effects the machine asks for (bill, send a remote start), keeps the read model in step, and owns
the timers (start timeout, watchdog, late-stop window). All I/O is in activities.

See ``docs/sessions.md`` for the machine, the messages and the billing ids.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.sessions import (
        ChargerLivenessInput,
        SessionActivities,
        SessionReadModel,
    )
    from domain.closure import CLOSED_NOT_CHARGING, CLOSED_NOT_ONGOING, FLAG_START_REFUSED
    from domain.session import (
        FINAL_PHASES,
        TRANSACTION_PHASES,
        AuthorizationRejected,
        Bill,
        Close,
        Effect,
        Event,
        LateStop,
        Phase,
        RecordClosure,
        Rejection,
        RemoteStopFailed,
        SendRemoteStart,
        SendRemoteStop,
        SessionState,
        StartTimedOut,
        StopRequested,
        TransactionClosed,
        TransactionStopped,
        Transition,
        WatchdogExpired,
        transition,
    )

    # ``from workflows import x`` for every module of this package: the sandbox then loads them
    # (and the message classes they share) once, consistently, for each run.
    from workflows import messages as msg
    from workflows import session_billing as billing
    from workflows import session_closure as closure
    from workflows import session_commands as commands
    from workflows import session_support as sup

# The invoice_linked signal is recorded; before it, such a signal was ignored.
INVOICE_PATCH = "session-invoice-linked-v1"
# pre_authorize checks the card even when the transaction started first (a late answer).
LATE_PRE_AUTHORIZE_PATCH = "late-pre-authorize-v1"


@workflow.defn(name=msg.SESSION_WORKFLOW)
class ChargingSessionWorkflow(
    billing.SessionBillingMixin, commands.SessionCommandsMixin, closure.SessionClosureMixin
):
    @workflow.init
    def __init__(self, input: msg.SessionInput) -> None:
        self._input = input
        self._pending: list[Effect] = []
        self._auth_lock = asyncio.Lock()
        self._read_model_lock = asyncio.Lock()  # writes in order: the last one is the newest
        self._signals = 0  # bumps on every accepted signal: wakes the watchdog wait
        self._persisted: SessionReadModel | None = None
        self._remote_start_outcome: str | None = None
        if input.carry is not None:
            carry = sup.SessionCarry.model_validate(input.carry)
            self._state = carry.state
            self._seen = set(carry.seen_event_ids)
            self._last_signal_at = carry.last_signal_at
            self._abandoned_at = carry.abandoned_at
            self._auth_result = carry.auth_result
            self._init_billing(carry)
        else:
            now = workflow.now()
            self._state = SessionState(
                charge_box_id=input.charge_box_id,
                origin=input.origin,
                id_tag=input.id_tag,
                connector_id=input.connector_id,
                requested_at=input.requested_at or now,
            )
            self._seen = set()
            self._last_signal_at = now
            self._abandoned_at = None
            self._auth_result = None
            self._init_billing(None)

    # -- main loop --------------------------------------------------------------------------

    @workflow.run
    async def run(self, input: msg.SessionInput) -> msg.SessionStatus:
        # Lago sends and periodic lines; executions recorded without the marker replay without.
        self._lago = workflow.patched(billing.LAGO_PATCH)
        if self._lago and self._lago_owed:
            self._kick_lago()  # carried over continue-as-new
        if self._state.origin == "remote" and self._state.phase == Phase.REQUESTED:
            await self._remote_start()
        while self._state.phase not in FINAL_PHASES:
            await self._perform_pending()
            await self._sync_read_model()
            if self._should_continue_as_new():
                await workflow.wait_condition(workflow.all_handlers_finished)
                if not self._pending:
                    workflow.continue_as_new(self._carry_input())
            # Handlers may have moved the session on while the activities above ran.
            phase = self._state.phase
            if phase in FINAL_PHASES:
                break
            if phase in (Phase.REQUESTED, Phase.PRE_AUTHORIZED):
                await self._await_start()
            elif phase in TRANSACTION_PHASES:
                await self._watch()
            elif phase == Phase.ABANDONED:
                await self._await_late_stop()
            elif phase == Phase.BILLED:
                self._apply(Close(at=workflow.now()))
            else:  # stopped: its Bill effect is pending; wait for it if a handler is adding it
                await workflow.wait_condition(self._wake(phase))
        await self._sync_read_model()
        if self._lago:
            await self._finish_billing()
            await self._sync_read_model()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.status()

    def _wake(self, phase: Phase) -> Callable[[], bool]:
        return lambda: self._changed(phase) or bool(self._pending) or self._should_continue_as_new()

    def _changed(self, phase: Phase) -> bool:
        return self._state.phase != phase

    async def _wait(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        """Wait for ``predicate``; False when ``timeout_s`` passed first (a durable timer)."""
        if timeout_s <= 0:
            return predicate()
        try:
            await workflow.wait_condition(predicate, timeout=timedelta(seconds=timeout_s))
        except TimeoutError:
            return False
        return True

    async def _await_start(self) -> None:
        phase = self._state.phase
        since = self._state.pre_authorized_at or self._state.requested_at or workflow.now()
        remaining = self._input.start_timeout_s - (workflow.now() - since).total_seconds()
        if await self._wait(self._wake(phase), remaining):
            return
        # Never expire under a pre-authorization that is still deciding.
        await workflow.wait_condition(lambda: not self._auth_lock.locked())
        if self._state.phase == phase:
            self._apply(StartTimedOut(at=workflow.now()))

    async def _watch(self) -> None:
        """The watchdog: a charger silent past the limit gets its session abandoned."""
        phase, heard = self._state.phase, self._signals
        limit = self._input.watchdog_silence_s
        remaining = limit - (workflow.now() - self._last_signal_at).total_seconds()
        wake = self._wake(phase)
        periodic = self._periodic_due_in()
        if periodic is not None and periodic < remaining:
            if not await self._wait(lambda: wake() or self._signals != heard, periodic):
                await self._bill_periodic()
            return
        if await self._wait(lambda: wake() or self._signals != heard, remaining):
            return
        liveness = await workflow.execute_activity_method(
            SessionActivities.check_charger_liveness,
            ChargerLivenessInput(
                charge_box_id=self._state.charge_box_id,
                silent_after_s=limit,
                connector_id=self._state.connector_id,
                transaction_id=self._state.transaction_id,
            ),
            start_to_close_timeout=sup.DB_TIMEOUT,
            retry_policy=sup.DB_RETRY,
        )
        if self._signals != heard or self._state.phase != phase:
            return
        if (
            liveness.ocpp_transaction_id is not None
            and liveness.connected
            and workflow.patched(closure.TRANSACTION_STATUS_PATCH)
        ):
            # OCPP 2.0.1: ask the station before deciding (its connector statuses say nothing
            # about charging, and a queued Ended must not be pre-empted).
            status = await self._transaction_status(liveness.ocpp_transaction_id)
            if self._signals != heard or self._state.phase != phase:
                return
            if status is not None:
                ongoing, queued = status
                if ongoing or queued:
                    self._last_signal_at = workflow.now()
                else:
                    self._close(TransactionClosed(at=workflow.now(), reason=CLOSED_NOT_ONGOING))
                return
            # No answer (offline, timeout, CallError): the rules below decide, as before.
        if liveness.alive:
            if liveness.connector_charging or not workflow.patched(closure.CLOSURE_PATCH):
                # The charger still talks and its connector still charges: the transaction is
                # just quiet. Keep waiting.
                self._last_signal_at = workflow.now()
                return
            # A live charger whose connector has not been charging for the whole window forgot
            # the transaction (heartbeats alone must not keep it open forever).
            self._close(TransactionClosed(at=workflow.now(), reason=CLOSED_NOT_CHARGING))
            return
        if isinstance(self._apply(WatchdogExpired(at=workflow.now())), Transition):
            self._abandoned_at = workflow.now()

    async def _await_late_stop(self) -> None:
        since = self._abandoned_at or workflow.now()
        remaining = self._input.late_stop_window_s - (workflow.now() - since).total_seconds()
        if not await self._wait(self._wake(Phase.ABANDONED), remaining):
            self._apply(Close(at=workflow.now()))

    def _should_continue_as_new(self) -> bool:
        info = workflow.info()
        if info.is_continue_as_new_suggested():
            return True
        limit = self._input.continue_as_new_after_events
        return limit is not None and info.get_current_history_length() >= limit

    def _carry_input(self) -> msg.SessionInput:
        carry = sup.SessionCarry(
            state=self._state,
            seen_event_ids=sorted(self._seen),
            last_signal_at=self._last_signal_at,
            abandoned_at=self._abandoned_at,
            auth_result=self._auth_result,
            lago_owed=self._lago_pending(),
            per_session=self._per_session,
            invoice=self._invoice,
            last_periodic_at=self._last_periodic_at,
        )
        return self._input.model_copy(update={"carry": carry.model_dump(mode="json")})

    # -- state --------------------------------------------------------------------------------

    def _apply(self, event: Event) -> Transition | Rejection:
        result = transition(self._state, event)
        if isinstance(result, Rejection):
            workflow.logger.info("ignored %s: %s", type(event).__name__, result.reason)
            return result
        self._state = result.state
        self._pending.extend(e for e in result.effects if not isinstance(e, SendRemoteStop))
        return result

    def _first_time(self, event_id: int) -> bool:
        """Dedup: the gateway may deliver a signal more than once (outbox relay)."""
        if event_id in self._seen:
            return False
        self._seen.add(event_id)
        self._signals += 1
        self._last_signal_at = workflow.now()
        return True

    async def _sync_read_model(self) -> None:
        async with self._read_model_lock:
            await self._write_read_model()

    async def _write_read_model(self) -> None:
        while True:
            row = sup.read_model_of(
                workflow.info().workflow_id,
                self._state,
                self._invoice,
                with_flags=workflow.patched(billing.FLAGS_PATCH),
            )
            if row == self._persisted:
                return
            try:
                if workflow.patched(sup.READ_MODEL_LOCAL_PATCH):
                    await workflow.execute_local_activity_method(
                        SessionActivities.upsert_session_read_model,
                        row,
                        start_to_close_timeout=sup.DB_TIMEOUT,
                        retry_policy=sup.DB_RETRY,
                    )
                else:
                    await workflow.execute_activity_method(
                        SessionActivities.upsert_session_read_model,
                        row,
                        start_to_close_timeout=sup.DB_TIMEOUT,
                        retry_policy=sup.DB_RETRY,
                    )
            except sup.ACTIVITY_FAILED as err:
                if not self._data_error(err):
                    raise
            self._persisted = row
            # A signal handled while the activity ran changed the state after ``row`` was
            # taken, and the loop's next wait counts that signal as already heard: write again
            # now, or the read model lags until the next signal. Executions recorded before
            # this patch replay with one write. A stream of signals never holds off
            # continue-as-new, and a change that brought effects (a bill, a closure record) is
            # written by the loop's head after they ran, as before: the read model never shows
            # a state whose effects have not happened yet.
            if (
                not workflow.patched(sup.READ_MODEL_CATCH_UP_PATCH)
                or self._should_continue_as_new()
                or self._pending
            ):
                return

    # -- effects ------------------------------------------------------------------------------

    async def _perform_pending(self) -> None:
        while self._pending:
            effect = self._pending.pop(0)
            if isinstance(effect, Bill):
                await self._bill(effect)
            elif isinstance(effect, SendRemoteStart):
                await self._send_remote_start(effect)
            elif isinstance(effect, RecordClosure):
                await self._record_closure(effect)

    # -- pre-authorization --------------------------------------------------------------------

    @workflow.update(name=msg.UPDATE_PRE_AUTHORIZE)
    async def pre_authorize(self, request: msg.PreAuthorizeInput) -> msg.PreAuthorizeResult:
        async with self._auth_lock:
            if self._auth_result is not None:
                return self._auth_result  # a repeated tap or a retried update
            if (
                self._state.phase in TRANSACTION_PHASES
                and self._state.origin == "tap"
                and request.local_status == "Accepted"
                and workflow.patched(LATE_PRE_AUTHORIZE_PATCH)
            ):
                # The charger started before this update was handled (the gateway answered the
                # tap from its local decision): the card is still checked, and on a refusal the
                # gateway stops the transaction (gateway/late_refusal.py).
                return await self._authorize(request.id_tag, request.connector_id)
            if self._state.phase != Phase.REQUESTED:
                return msg.PreAuthorizeResult(
                    status="Invalid", reason=f"session is {self._state.phase.value}"
                )
            if request.local_status != "Accepted":
                # The gateway already refused locally; the workflow may only tighten that.
                self._apply(
                    AuthorizationRejected(
                        at=workflow.now(), status=request.local_status, reason="local_decision"
                    )
                )
                self._auth_result = msg.PreAuthorizeResult(
                    status=request.local_status, reason="local_decision"
                )
                return self._auth_result
            return await self._authorize(request.id_tag, request.connector_id)

    @pre_authorize.validator
    def _validate_pre_authorize(self, request: msg.PreAuthorizeInput) -> None:
        if request.charge_box_id != self._state.charge_box_id:
            raise ValueError(f"this session is on charger {self._state.charge_box_id!r}")
        if not request.id_tag or len(request.id_tag) > 20:
            raise ValueError("id_tag must have 1 to 20 characters")
        if self._state.id_tag is not None and request.id_tag != self._state.id_tag:
            raise ValueError("this session belongs to another card")

    # -- remote stop --------------------------------------------------------------------------

    @workflow.update(name=msg.UPDATE_REMOTE_STOP)
    async def remote_stop(self, request: msg.RemoteStopInput) -> msg.RemoteStopResult:
        result = self._apply(StopRequested(at=workflow.now(), requested_by=request.requested_by))
        if isinstance(result, Rejection):
            return msg.RemoteStopResult(accepted=False, message=result.reason)
        sends = [e for e in result.effects if isinstance(e, SendRemoteStop)]
        if not sends:
            return msg.RemoteStopResult(accepted=True, message="already stopping")
        refused = await self._command_refused(
            "RemoteStopTransaction", {"transactionId": sends[0].transaction_id}
        )
        if refused is None:
            return msg.RemoteStopResult(accepted=True)
        self._apply(RemoteStopFailed(at=workflow.now(), reason=refused))
        return msg.RemoteStopResult(accepted=False, message=refused)

    @remote_stop.validator
    def _validate_remote_stop(self, request: msg.RemoteStopInput) -> None:
        if not request.requested_by:
            raise ValueError("requested_by is required")
        if self._state.phase not in TRANSACTION_PHASES:
            raise ValueError(f"no running transaction: session is {self._state.phase.value}")

    # -- signals from the gateway ---------------------------------------------------------------

    @workflow.signal(name=msg.SIGNAL_TRANSACTION_STARTED)
    def transaction_started(self, signal: msg.TransactionStarted) -> None:
        if self._first_time(signal.event_id):
            self._apply(sup.started_event(signal))

    @workflow.signal(name=msg.SIGNAL_METER_PROGRESS)
    def meter_progress(self, signal: msg.MeterProgress) -> None:
        if not self._first_time(signal.event_id):
            return
        result = self._apply(sup.progress_event(signal))
        flagged = "not_monotonic" in self._state.flags
        if isinstance(result, Rejection) and result.code == "not_monotonic" and not flagged:
            flags = [*self._state.flags, "not_monotonic"]
            self._state = self._state.model_copy(update={"flags": flags})

    @workflow.signal(name=msg.SIGNAL_TRANSACTION_STOPPED)
    def transaction_stopped(self, signal: msg.TransactionStopped) -> None:
        if not self._first_time(signal.event_id):
            return
        if self._state.phase == Phase.ABANDONED:
            self._apply(
                LateStop(
                    transaction_id=signal.transaction_id,
                    meter_stop_wh=signal.meter_stop_wh,
                    stopped_at=signal.stopped_at,
                    reason=signal.reason,
                    flags=signal.flags,
                )
            )
            return
        self._apply(
            TransactionStopped(
                transaction_id=signal.transaction_id,
                meter_stop_wh=signal.meter_stop_wh,
                stopped_at=signal.stopped_at,
                reason=signal.reason,
                flags=signal.flags,
            )
        )

    @workflow.signal(name=msg.SIGNAL_AUTHORIZATION_REFUSED)
    async def authorization_refused(self, signal: msg.AuthorizationRefused) -> None:
        """The pre-authorization refused the card after the transaction started (the charger
        was answered from the gateway's local decision): flag the session, as a refused
        StartTransaction is, and tell the charger to stop. Histories recorded before this
        signal existed never carry it, so they replay unchanged."""
        if not self._first_time(signal.event_id):
            return
        if self._state.transaction_id != signal.transaction_id:
            return
        flag = f"{FLAG_START_REFUSED}:{signal.status}"
        if flag not in self._state.flags:
            self._state = self._state.model_copy(
                update={"flags": [*self._state.flags, flag], "auth_status": signal.status}
            )
        if self._state.phase not in TRANSACTION_PHASES:
            return  # already stopped: the flag goes with the bill
        result = self._apply(StopRequested(at=workflow.now(), requested_by="authorization"))
        sends = (
            [e for e in result.effects if isinstance(e, SendRemoteStop)]
            if isinstance(result, Transition)
            else []
        )
        if not sends:
            return
        refused = await self._command_refused(
            "RemoteStopTransaction", {"transactionId": sends[0].transaction_id}
        )
        if refused is not None:
            workflow.logger.warning("remote stop of a refused card failed: %s", refused)
            self._apply(RemoteStopFailed(at=workflow.now(), reason=refused))

    @workflow.signal(name=msg.SIGNAL_CONNECTOR_STATUS)
    def connector_status(self, signal: msg.ConnectorStatus) -> None:
        if not self._first_time(signal.event_id):
            return
        if self._state.connector_id not in (None, signal.connector_id):
            return
        event = sup.connector_event(signal)
        if event is not None:
            self._apply(event)

    @workflow.signal(name=msg.SIGNAL_INVOICE_LINKED)
    def invoice_linked(self, signal: msg.InvoiceLinked) -> None:
        """Lago invoiced this session (webhook link); shown in the status and the read model."""
        if workflow.patched(INVOICE_PATCH):
            self._invoice = signal

    # -- query --------------------------------------------------------------------------------

    @workflow.query(name=msg.QUERY_STATUS)
    def status(self) -> msg.SessionStatus:
        status = sup.status_of(workflow.info().workflow_id, self._state, self._invoice)
        return status.model_copy(update={"remote_start": self._remote_start_outcome})
