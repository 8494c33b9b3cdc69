"""Closing a transaction the charger will not stop, for ChargingSessionWorkflow.

A charger that crashed or lost power may come back without its transaction and never send a
StopTransaction. The session is then closed by the platform (the machine's ``TransactionClosed``:
bill the last good register, flag why, wait for a late stop like an abandoned session):

* the gateway saw the same connector start another transaction, or the rebooted charger report
  the connector free → signal ``transaction_closed``;
* the watchdog found a live charger whose connector is not charging (see ``_watch``);
* an operator force-closed it → update ``force_close`` (optionally with the energy to bill).

Each closure is recorded in the journal and the audit log by an activity (the machine's
``RecordClosure`` effect). Executions recorded before ``session-closure-v1`` replay without it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.session_closure import RecordSessionClosureInput, SessionClosureActivities
    from domain.closure import CLOSED_BY_OPERATOR
    from domain.session import (
        TRANSACTION_PHASES,
        Event,
        RecordClosure,
        Rejection,
        SessionState,
        TransactionClosed,
        Transition,
    )
    from workflows import messages as msg
    from workflows import session_support as sup

# Closures are recorded (journal + audit), and the watchdog closes a live charger's transaction
# once its connector stopped charging. Before it, a live charger kept every transaction open.
CLOSURE_PATCH = "session-closure-v1"
# OCPP 2.0.1: the watchdog asks the station (GetTransactionStatus) about a silent transaction
# before closing or abandoning it. Before it, no command was sent there.
TRANSACTION_STATUS_PATCH = "ocpp201-transaction-status-v1"


class SessionClosureMixin:
    """Platform closures for :class:`workflows.charging_session.ChargingSessionWorkflow`."""

    _state: SessionState
    _abandoned_at: datetime | None

    # Provided by ChargingSessionWorkflow (declared here so the mixin type-checks).
    _apply: Callable[[Event], Transition | Rejection]
    _first_time: Callable[[int], bool]
    _data_error: Callable[[ActivityError], bool]  # SessionBillingMixin
    _send_command: Callable[
        [msg.ChargerAction, dict[str, object]], Awaitable[msg.ChargerCommandResult]
    ]  # SessionCommandsMixin

    def _close(self, event: TransactionClosed) -> Transition | Rejection:
        result = self._apply(event)
        if isinstance(result, Transition) and self._abandoned_at is None:
            self._abandoned_at = workflow.now()  # the late-stop window starts now
        return result

    async def _transaction_status(self, ocpp_transaction_id: str) -> tuple[bool, bool] | None:
        """Ask a 2.0.1 station about its transaction: (ongoing, messages queued), or None when it
        could not be asked or gave no usable answer."""
        try:
            answer = await self._send_command(
                "GetTransactionStatus", {"transactionId": ocpp_transaction_id}
            )
        except ActivityError as err:
            workflow.logger.warning("GetTransactionStatus not answered: %s", err.cause or err)
            return None
        queued = answer.payload.get("messagesInQueue")
        ongoing = answer.payload.get("ongoingIndicator")
        if not isinstance(queued, bool) or not isinstance(ongoing, bool):
            return None  # ongoingIndicator is optional in the schema: no answer, no closure
        return ongoing, queued

    async def _record_closure(self, effect: RecordClosure) -> None:
        if not workflow.patched(CLOSURE_PATCH):
            return
        try:
            await self._record_closure_row(effect)
        except ActivityError as err:
            if not self._data_error(err):
                raise

    async def _record_closure_row(self, effect: RecordClosure) -> None:
        await workflow.execute_activity_method(
            SessionClosureActivities.record_session_closure,
            RecordSessionClosureInput(
                workflow_id=workflow.info().workflow_id,
                charge_box_id=self._state.charge_box_id,
                transaction_id=effect.transaction_id,
                reason=effect.reason,
                at=effect.at,
                register_wh=effect.register_wh,
                requested_by=effect.requested_by,
                note=effect.note,
            ),
            start_to_close_timeout=sup.DB_TIMEOUT,
            retry_policy=sup.DB_RETRY,
        )

    @workflow.signal(name=msg.SIGNAL_TRANSACTION_CLOSED)
    def transaction_closed(self, signal: msg.TransactionClosed) -> None:
        if self._first_time(signal.event_id):
            self._close(
                TransactionClosed(
                    at=signal.at, reason=signal.reason, transaction_id=signal.transaction_id
                )
            )

    @workflow.update(name=msg.UPDATE_FORCE_CLOSE)
    async def force_close(self, request: msg.ForceCloseInput) -> msg.ForceCloseResult:
        register = None
        if request.energy_wh is not None:
            assert self._state.meter_start_wh is not None
            register = self._state.meter_start_wh + request.energy_wh
        result = self._close(
            TransactionClosed(
                at=workflow.now(),
                reason=CLOSED_BY_OPERATOR,
                register_wh=register,
                requested_by=request.requested_by,
                note=request.reason,
            )
        )
        if isinstance(result, Rejection):
            return msg.ForceCloseResult(accepted=False, message=result.reason)
        billed = next(e for e in result.effects if isinstance(e, RecordClosure)).register_wh
        start = self._state.meter_start_wh or 0
        return msg.ForceCloseResult(accepted=True, billed_energy_wh=max(0, billed - start))

    @force_close.validator
    def _validate_force_close(self, request: msg.ForceCloseInput) -> None:
        if self._state.phase not in TRANSACTION_PHASES:
            raise ValueError(f"no running transaction: session is {self._state.phase.value}")


__all__ = ["CLOSURE_PATCH", "TRANSACTION_STATUS_PATCH", "SessionClosureMixin"]
