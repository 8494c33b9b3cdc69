"""The charging-session state machine, as one pure function.

``transition(state, event)`` returns either a :class:`Transition` (the new state and the effects
the caller must perform) or a :class:`Rejection` (the event does not apply in this state; the
state is unchanged). It never performs I/O, reads no clock and draws no randomness: times arrive
inside the events. The workflow (``workflows/charging_session.py``) is the imperative shell that
feeds events in and performs the effects.

Happy path::

    requested ─pre_authorized→ pre_authorized ─transaction_started→ charging ⇄ suspended
        charging ─stop_requested→ stopping ─transaction_stopped→ stopped
        stopped ─billed→ billed ─close→ closed

Failure ends: ``rejected`` (authorization refused, or the charger refused the remote start),
``expired`` (no start within the connection timeout), ``abandoned`` (the watchdog gave up on a
silent charger, or the platform closed a transaction the charger forgot or an operator
force-closed: the last good register, or an operator-entered energy, is billed). An abandoned
session still accepts a ``late_stop`` (reconciliation: the delta is billed as compensation) until
it is closed.

Repeated events that change nothing (a second ``pre_authorized``, a resent start for the same
transaction, ``stop_requested`` while already stopping) are accepted as no-ops, so every caller
can be at-least-once.
"""

from __future__ import annotations

from datetime import datetime

from domain.closure import (
    CLOSED_CHARGER_SILENT,
    FLAG_OPERATOR_ENERGY,
    FLAG_START_REFUSED,
    closure_end_reason,
)
from domain.energy import FLAG_NOT_MONOTONIC, FLAG_REGISTER_BACKWARDS
from domain.session_events import (
    AuthorizationRejected,
    Bill,
    Billed,
    Close,
    Effect,
    Event,
    LateStop,
    MeterProgressed,
    PeriodicBilled,
    PreAuthorized,
    RecordClosure,
    RemoteStartFailed,
    RemoteStartRequested,
    RemoteStopFailed,
    Resumed,
    SendRemoteStart,
    SendRemoteStop,
    StartTimedOut,
    StopRequested,
    Suspended,
    TransactionClosed,
    TransactionStarted,
    TransactionStopped,
    WatchdogExpired,
)
from domain.session_model import (
    FINAL_PHASES,
    OPEN_PHASES,
    TRANSACTION_PHASES,
    Phase,
    Rejection,
    SessionState,
    Transition,
)

__all__ = [
    "FINAL_PHASES",
    "OPEN_PHASES",
    "TRANSACTION_PHASES",
    "AuthorizationRejected",
    "Bill",
    "Billed",
    "Close",
    "Effect",
    "Event",
    "LateStop",
    "MeterProgressed",
    "PeriodicBilled",
    "Phase",
    "PreAuthorized",
    "RecordClosure",
    "Rejection",
    "RemoteStartFailed",
    "RemoteStartRequested",
    "RemoteStopFailed",
    "Resumed",
    "SendRemoteStart",
    "SendRemoteStop",
    "SessionState",
    "StartTimedOut",
    "StopRequested",
    "Suspended",
    "TransactionClosed",
    "TransactionStarted",
    "TransactionStopped",
    "Transition",
    "WatchdogExpired",
    "transition",
]


# -- The function ---------------------------------------------------------------------------------


def _reject(state: SessionState, event: Event) -> Rejection:
    if state.phase in FINAL_PHASES:
        return Rejection(code="final", reason=f"session is {state.phase.value}")
    return Rejection(
        code="not_in_this_state",
        reason=f"{type(event).__name__} does not apply to a {state.phase.value} session",
    )


def _with(state: SessionState, **changes: object) -> SessionState:
    return state.model_copy(update=changes)


def _with_flags(flags: list[str], more: list[str]) -> list[str]:
    """``flags`` plus those of ``more`` it does not have yet (order kept)."""
    added = [flag for i, flag in enumerate(more) if flag not in flags and flag not in more[:i]]
    return [*flags, *added] if added else flags


def _same_transaction(state: SessionState, transaction_id: int) -> Rejection | None:
    if state.transaction_id != transaction_id:
        return Rejection(
            code="wrong_transaction",
            reason=f"transaction {transaction_id} is not this session's ({state.transaction_id})",
        )
    return None


def _last_register(state: SessionState) -> tuple[int, datetime]:
    register = state.last_register_wh
    if register is None:
        register = state.meter_start_wh
    at = state.last_register_at or state.started_at
    assert register is not None and at is not None, "a running transaction has a start"
    return register, at


def _on_start(state: SessionState, event: TransactionStarted) -> Transition | Rejection:
    if state.transaction_id is not None:
        wrong = _same_transaction(state, event.transaction_id)
        return wrong or Transition(state=state)
    refused = event.auth_status != "Accepted"
    return Transition(
        state=_with(
            state,
            phase=Phase.CHARGING,
            transaction_id=event.transaction_id,
            connector_id=event.connector_id,
            id_tag=state.id_tag or event.id_tag,
            user_id=state.user_id or event.user_id,
            meter_start_wh=event.meter_start_wh,
            started_at=event.started_at,
            last_register_wh=event.meter_start_wh,
            last_register_at=event.started_at,
            # The charger was told to stop (idTagInfo) but may not: what it measures is still
            # billed to the card's owner; the flag tells the operator.
            auth_status=event.auth_status if refused else state.auth_status,
            flags=_with_flags(state.flags, [f"{FLAG_START_REFUSED}:{event.auth_status}"])
            if refused
            else state.flags,
        )
    )


def _on_closed(state: SessionState, event: TransactionClosed) -> Transition | Rejection:
    """The platform closes the running transaction: bill the last good register (or the
    operator's), flag why, and wait for a late StopTransaction like an abandoned session."""
    if event.transaction_id is not None:
        wrong = _same_transaction(state, event.transaction_id)
        if wrong:
            return wrong
    assert state.transaction_id is not None and state.meter_start_wh is not None
    register, at = _last_register(state)
    end_reason = closure_end_reason(event.reason)
    state = _with(state, flags=_with_flags(state.flags, [end_reason]))
    if event.register_wh is not None:
        register, at = event.register_wh, event.at
        state = _with(state, flags=_with_flags(state.flags, [FLAG_OPERATOR_ENERGY]))
    return Transition(
        state=_with(
            state,
            phase=Phase.ABANDONED,
            end_reason=end_reason,
            pending_bills=state.pending_bills + 1,
        ),
        effects=[
            Bill(kind="final", register_wh=register, at=at),
            RecordClosure(
                transaction_id=state.transaction_id,
                reason=event.reason,
                at=event.at,
                requested_by=event.requested_by,
                note=event.note,
                register_wh=register,
            ),
        ],
    )


def _on_running(state: SessionState, event: Event) -> Transition | Rejection:
    """Events in charging / suspended / stopping."""
    phase = state.phase
    match event:
        case TransactionStarted():
            return _on_start(state, event)
        case MeterProgressed():
            wrong = _same_transaction(state, event.transaction_id)
            if wrong:
                return wrong
            register, _ = _last_register(state)
            if event.register_wh < register:
                return Rejection(
                    code="not_monotonic",
                    reason=f"register {event.register_wh} Wh is below {register} Wh",
                )
            return Transition(
                state=_with(state, last_register_wh=event.register_wh, last_register_at=event.at)
            )
        case Suspended():
            suspended: Phase = Phase.SUSPENDED if phase == Phase.CHARGING else phase
            return Transition(state=_with(state, phase=suspended))
        case Resumed():
            resumed: Phase = Phase.CHARGING if phase == Phase.SUSPENDED else phase
            return Transition(state=_with(state, phase=resumed))
        case StopRequested():
            if phase == Phase.STOPPING:
                return Transition(state=state)
            assert state.transaction_id is not None
            return Transition(
                state=_with(state, phase=Phase.STOPPING),
                effects=[SendRemoteStop(transaction_id=state.transaction_id)],
            )
        case RemoteStopFailed() if phase == Phase.STOPPING:
            return Transition(state=_with(state, phase=Phase.CHARGING))
        case TransactionStopped():
            wrong = _same_transaction(state, event.transaction_id)
            if wrong:
                return wrong
            assert state.meter_start_wh is not None
            flags = _with_flags(state.flags, event.flags)
            if event.meter_stop_wh < state.meter_start_wh:
                flags = _with_flags(flags, [FLAG_REGISTER_BACKWARDS])
            elif event.meter_stop_wh < (state.last_register_wh or 0):
                flags = _with_flags(flags, [FLAG_NOT_MONOTONIC])
            return Transition(
                state=_with(
                    state,
                    phase=Phase.STOPPED,
                    meter_stop_wh=event.meter_stop_wh,
                    stopped_at=event.stopped_at,
                    stop_reason=event.reason,
                    end_reason=event.reason or "stopped",
                    flags=flags,
                    pending_bills=state.pending_bills + 1,
                ),
                effects=[Bill(kind="final", register_wh=event.meter_stop_wh, at=event.stopped_at)],
            )
        case TransactionClosed():
            return _on_closed(state, event)
        case WatchdogExpired():
            register, at = _last_register(state)
            assert state.transaction_id is not None
            return Transition(
                state=_with(
                    state,
                    phase=Phase.ABANDONED,
                    end_reason="abandoned",
                    pending_bills=state.pending_bills + 1,
                ),
                effects=[
                    Bill(kind="final", register_wh=register, at=at),
                    RecordClosure(
                        transaction_id=state.transaction_id,
                        reason=CLOSED_CHARGER_SILENT,
                        at=event.at,
                        register_wh=register,
                    ),
                ],
            )
    return _reject(state, event)


def _on_billed(state: SessionState, event: Billed) -> Transition:
    pending = max(0, state.pending_bills - 1)
    next_phase = Phase.BILLED if state.phase == Phase.STOPPED and pending == 0 else state.phase
    ids = state.billing_event_ids
    if event.event_id is not None and event.event_id not in ids:
        ids = [*ids, event.event_id]
    return Transition(
        state=_with(
            state,
            phase=next_phase,
            tariff=event.tariff,
            currency=event.currency,
            billing_sequence=max(state.billing_sequence, event.sequence),
            billing_event_ids=ids,
            billed_energy_wh=state.billed_energy_wh + event.energy_wh,
            billed_amount_minor=state.billed_amount_minor + event.amount_minor,
            pending_bills=pending,
        )
    )


def _on_periodic_billed(state: SessionState, event: PeriodicBilled) -> Transition:
    ids = state.billing_event_ids
    if event.event_id not in ids:
        ids = [*ids, event.event_id]
    return Transition(
        state=_with(
            state,
            tariff=event.tariff,
            currency=event.currency,
            billing_sequence=max(state.billing_sequence, event.sequence),
            billing_event_ids=ids,
            billed_energy_wh=state.billed_energy_wh + event.energy_wh,
            billed_amount_minor=state.billed_amount_minor + event.amount_minor,
        )
    )


# A periodic line may complete after the transaction stopped (or was abandoned) meanwhile.
_PERIODIC_PHASES = frozenset({*TRANSACTION_PHASES, Phase.STOPPED, Phase.ABANDONED})


def transition(state: SessionState, event: Event) -> Transition | Rejection:
    """Apply ``event`` to ``state``. See the module docstring for the machine."""
    phase = state.phase
    if phase in FINAL_PHASES:
        return _reject(state, event)
    if isinstance(event, PeriodicBilled):
        if phase in _PERIODIC_PHASES:
            return _on_periodic_billed(state, event)
        return _reject(state, event)
    if phase in TRANSACTION_PHASES:
        return _on_running(state, event)
    match phase, event:
        case (Phase.REQUESTED, PreAuthorized()):
            return Transition(
                state=_with(
                    state,
                    phase=Phase.PRE_AUTHORIZED,
                    pre_authorized_at=event.at,
                    id_tag=event.id_tag,
                    connector_id=state.connector_id or event.connector_id,
                    auth_status="Accepted",
                    user_id=event.user_id,
                    billing_customer_id=event.billing_customer_id,
                )
            )
        case (Phase.PRE_AUTHORIZED, PreAuthorized()):
            return Transition(state=state)
        case (Phase.REQUESTED, AuthorizationRejected()):
            return Transition(
                state=_with(
                    state,
                    phase=Phase.REJECTED,
                    auth_status=event.status,
                    auth_reason=event.reason,
                    end_reason=event.reason or event.status,
                )
            )
        case (Phase.PRE_AUTHORIZED, RemoteStartRequested()):
            if state.remote_start_sent:
                return Transition(state=state)
            assert state.id_tag is not None
            return Transition(
                state=_with(state, remote_start_sent=True),
                effects=[SendRemoteStart(id_tag=state.id_tag, connector_id=state.connector_id)],
            )
        case (Phase.PRE_AUTHORIZED, RemoteStartFailed()):
            return Transition(
                state=_with(
                    state, phase=Phase.REJECTED, end_reason=f"remote_start_failed: {event.reason}"
                )
            )
        case (Phase.REQUESTED | Phase.PRE_AUTHORIZED, TransactionStarted()):
            return _on_start(state, event)
        case (Phase.REQUESTED | Phase.PRE_AUTHORIZED, StartTimedOut()):
            return Transition(state=_with(state, phase=Phase.EXPIRED, end_reason="start_timeout"))
        case (Phase.STOPPED | Phase.BILLED, TransactionStopped()):
            return _same_transaction(state, event.transaction_id) or Transition(state=state)
        case (Phase.STOPPED | Phase.ABANDONED, Billed()):
            return _on_billed(state, event)
        case (Phase.ABANDONED, LateStop()):
            wrong = _same_transaction(state, event.transaction_id)
            if wrong:
                return wrong
            return Transition(
                state=_with(
                    state,
                    phase=Phase.STOPPED,
                    meter_stop_wh=event.meter_stop_wh,
                    stopped_at=event.stopped_at,
                    stop_reason=event.reason,
                    end_reason="abandoned_reconciled",
                    flags=_with_flags(state.flags, event.flags),
                    pending_bills=state.pending_bills + 1,
                ),
                effects=[
                    Bill(kind="compensation", register_wh=event.meter_stop_wh, at=event.stopped_at)
                ],
            )
        case (Phase.ABANDONED, TransactionClosed()):
            # Closed already (a second rule, or an operator, after the first): nothing to add.
            wrong = None
            if event.transaction_id is not None:
                wrong = _same_transaction(state, event.transaction_id)
            return wrong or Transition(state=state)
        case (Phase.BILLED | Phase.ABANDONED, Close()):
            return Transition(state=_with(state, phase=Phase.CLOSED))
    return _reject(state, event)
