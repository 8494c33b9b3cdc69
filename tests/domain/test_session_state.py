"""The session state machine, over every state x event."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.pricing import TariffTerms
from domain.session import (
    AuthorizationRejected,
    Bill,
    Billed,
    Close,
    Event,
    LateStop,
    MeterProgressed,
    PeriodicBilled,
    Phase,
    PreAuthorized,
    RecordClosure,
    Rejection,
    RemoteStartFailed,
    RemoteStartRequested,
    RemoteStopFailed,
    Resumed,
    SendRemoteStart,
    SendRemoteStop,
    SessionState,
    StartTimedOut,
    StopRequested,
    Suspended,
    TransactionClosed,
    TransactionStarted,
    TransactionStopped,
    Transition,
    WatchdogExpired,
    transition,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
TARIFF = TariffTerms(currency="EUR", price_per_kwh_minor=30)


def state_in(phase: Phase) -> SessionState:
    """A plausible state for each phase (a started transaction where the phase implies one)."""
    base = SessionState(charge_box_id="CB1", requested_at=T0, phase=phase)
    if phase == Phase.REQUESTED:
        return base
    base = base.model_copy(
        update={"id_tag": "TAG1", "connector_id": 1, "pre_authorized_at": T0, "origin": "remote"}
    )
    if phase in (Phase.PRE_AUTHORIZED, Phase.REJECTED, Phase.EXPIRED):
        return base
    return base.model_copy(
        update={
            # stopped / abandoned sessions have handed out one Bill effect
            "pending_bills": 1 if phase in (Phase.STOPPED, Phase.ABANDONED) else 0,
            "transaction_id": 7,
            "meter_start_wh": 1000,
            "started_at": T0,
            "last_register_wh": 1500,
            "last_register_at": T0 + timedelta(minutes=5),
        }
    )


EVENTS: dict[str, Event] = {
    "pre_authorized": PreAuthorized(at=T0, id_tag="TAG1", connector_id=1),
    "authorization_rejected": AuthorizationRejected(at=T0, status="Blocked", reason="card_blocked"),
    "remote_start_requested": RemoteStartRequested(at=T0),
    "remote_start_failed": RemoteStartFailed(at=T0, reason="Rejected"),
    "transaction_started": TransactionStarted(
        transaction_id=7, connector_id=1, id_tag="TAG1", meter_start_wh=1000, started_at=T0
    ),
    "meter_progress": MeterProgressed(
        transaction_id=7, register_wh=2000, at=T0 + timedelta(minutes=9)
    ),
    "suspended": Suspended(at=T0, status="SuspendedEV"),
    "resumed": Resumed(at=T0),
    "stop_requested": StopRequested(at=T0, requested_by="driver"),
    "remote_stop_failed": RemoteStopFailed(at=T0, reason="Rejected"),
    "transaction_stopped": TransactionStopped(
        transaction_id=7, meter_stop_wh=3000, stopped_at=T0 + timedelta(minutes=10), reason="Local"
    ),
    "transaction_closed": TransactionClosed(at=T0, reason="new_transaction", transaction_id=7),
    "force_closed": TransactionClosed(
        at=T0, reason="operator", register_wh=2500, requested_by="user:op", note="charger gone"
    ),
    "start_timeout": StartTimedOut(at=T0),
    "watchdog_expired": WatchdogExpired(at=T0),
    "billed": Billed(
        at=T0,
        sequence=1,
        event_id="wf:1",
        energy_wh=500,
        amount_minor=15,
        currency="EUR",
        tariff=TARIFF,
    ),
    "periodic_billed": PeriodicBilled(
        at=T0,
        sequence=1,
        event_id="wf:1",
        energy_wh=500,
        amount_minor=15,
        currency="EUR",
        tariff=TARIFF,
    ),
    "late_stop": LateStop(transaction_id=7, meter_stop_wh=3000, stopped_at=T0 + timedelta(hours=3)),
    "close": Close(at=T0),
}

# Expected next phase for every accepted (state, event); everything else is a Rejection.
RUNNING = {
    "transaction_started": None,  # same transaction: no-op (phase unchanged)
    "meter_progress": None,
    "transaction_stopped": Phase.STOPPED,
    "watchdog_expired": Phase.ABANDONED,
    "transaction_closed": Phase.ABANDONED,
    "force_closed": Phase.ABANDONED,
    "periodic_billed": None,  # a periodic line changes sums, never the phase
}
ACCEPTED: dict[Phase, dict[str, Phase | None]] = {
    Phase.REQUESTED: {
        "pre_authorized": Phase.PRE_AUTHORIZED,
        "authorization_rejected": Phase.REJECTED,
        "transaction_started": Phase.CHARGING,
        "start_timeout": Phase.EXPIRED,
    },
    Phase.PRE_AUTHORIZED: {
        "pre_authorized": None,
        "remote_start_requested": None,
        "remote_start_failed": Phase.REJECTED,
        "transaction_started": Phase.CHARGING,
        "start_timeout": Phase.EXPIRED,
    },
    Phase.CHARGING: {
        **RUNNING,
        "suspended": Phase.SUSPENDED,
        "resumed": None,
        "stop_requested": Phase.STOPPING,
    },
    Phase.SUSPENDED: {
        **RUNNING,
        "suspended": None,
        "resumed": Phase.CHARGING,
        "stop_requested": Phase.STOPPING,
    },
    Phase.STOPPING: {
        **RUNNING,
        "suspended": None,
        "resumed": None,
        "stop_requested": None,
        "remote_stop_failed": Phase.CHARGING,
    },
    Phase.STOPPED: {"transaction_stopped": None, "billed": Phase.BILLED, "periodic_billed": None},
    Phase.BILLED: {"transaction_stopped": None, "close": Phase.CLOSED},
    Phase.ABANDONED: {
        "billed": None,
        "periodic_billed": None,
        "late_stop": Phase.STOPPED,
        "close": Phase.CLOSED,
        # Closed already: a second closure changes nothing.
        "transaction_closed": None,
        "force_closed": None,
    },
    Phase.CLOSED: {},
    Phase.REJECTED: {},
    Phase.EXPIRED: {},
}

CASES = [(phase, name) for phase in Phase for name in EVENTS]


def test_matrix_covers_every_state() -> None:
    assert set(ACCEPTED) == set(Phase)


@pytest.mark.parametrize(("phase", "event_name"), CASES, ids=[f"{p.value}-{e}" for p, e in CASES])
def test_every_state_and_event(phase: Phase, event_name: str) -> None:
    state = state_in(phase)
    result = transition(state, EVENTS[event_name])
    expected = ACCEPTED[phase]
    if event_name not in expected:
        assert isinstance(result, Rejection), result
        assert transition(state, EVENTS[event_name]) == result  # pure: same answer twice
        return
    assert isinstance(result, Transition), result
    want = expected[event_name] or phase
    assert result.state.phase == want
    assert state.phase == phase  # the input is never mutated


def test_final_states_reject_with_final_code() -> None:
    for phase in (Phase.CLOSED, Phase.REJECTED, Phase.EXPIRED):
        result = transition(state_in(phase), EVENTS["transaction_started"])
        assert isinstance(result, Rejection)
        assert result.code == "final"


def test_happy_path_effects() -> None:
    state = SessionState(charge_box_id="CB1")
    steps: list[Event] = [
        PreAuthorized(at=T0, id_tag="TAG1", connector_id=2),
        TransactionStarted(
            transaction_id=9, connector_id=2, id_tag="TAG1", meter_start_wh=100, started_at=T0
        ),
        MeterProgressed(transaction_id=9, register_wh=600, at=T0 + timedelta(minutes=1)),
        StopRequested(at=T0, requested_by="driver"),
    ]
    effects = []
    for event in steps:
        result = transition(state, event)
        assert isinstance(result, Transition)
        state, effects = result.state, result.effects
    assert effects == [SendRemoteStop(transaction_id=9)]
    assert state.last_register_wh == 600
    result = transition(
        state,
        TransactionStopped(transaction_id=9, meter_stop_wh=700, stopped_at=T0, reason="Remote"),
    )
    assert isinstance(result, Transition)
    assert result.effects == [Bill(kind="final", register_wh=700, at=T0)]
    assert result.state.end_reason == "Remote"


def test_remote_start_is_sent_once() -> None:
    state = state_in(Phase.PRE_AUTHORIZED)
    first = transition(state, RemoteStartRequested(at=T0))
    assert isinstance(first, Transition)
    assert first.effects == [SendRemoteStart(id_tag="TAG1", connector_id=1)]
    second = transition(first.state, RemoteStartRequested(at=T0))
    assert isinstance(second, Transition)
    assert second.effects == []


def test_meter_register_going_backwards_is_rejected() -> None:
    result = transition(
        state_in(Phase.CHARGING), MeterProgressed(transaction_id=7, register_wh=1400, at=T0)
    )
    assert isinstance(result, Rejection)
    assert result.code == "not_monotonic"


def test_signal_for_another_transaction_is_rejected() -> None:
    result = transition(
        state_in(Phase.CHARGING), MeterProgressed(transaction_id=8, register_wh=9000, at=T0)
    )
    assert isinstance(result, Rejection)
    assert result.code == "wrong_transaction"


def test_watchdog_bills_last_known_register_and_late_stop_compensates() -> None:
    abandoned = transition(state_in(Phase.CHARGING), WatchdogExpired(at=T0 + timedelta(hours=2)))
    assert isinstance(abandoned, Transition)
    assert abandoned.effects == [
        Bill(kind="final", register_wh=1500, at=T0 + timedelta(minutes=5)),
        RecordClosure(
            transaction_id=7, reason="charger_silent", at=T0 + timedelta(hours=2), register_wh=1500
        ),
    ]
    late = transition(
        abandoned.state,
        LateStop(transaction_id=7, meter_stop_wh=4000, stopped_at=T0 + timedelta(hours=3)),
    )
    assert isinstance(late, Transition)
    assert late.state.phase == Phase.STOPPED
    assert late.effects == [Bill(kind="compensation", register_wh=4000, at=T0 + timedelta(hours=3))]


def test_stop_below_start_is_flagged() -> None:
    result = transition(
        state_in(Phase.CHARGING),
        TransactionStopped(transaction_id=7, meter_stop_wh=10, stopped_at=T0),
    )
    assert isinstance(result, Transition)
    assert "register_backwards" in result.state.flags


def test_stop_flags_from_the_gateway_become_session_flags_once() -> None:
    flagged = ["meter_stop_out_of_range", "stop_time_out_of_range"]
    result = transition(
        state_in(Phase.CHARGING),
        TransactionStopped(transaction_id=7, meter_stop_wh=1500, stopped_at=T0, flags=flagged),
    )
    assert isinstance(result, Transition)
    assert result.state.flags == flagged
    assert result.effects == [Bill(kind="final", register_wh=1500, at=T0)]
    abandoned = transition(state_in(Phase.CHARGING), WatchdogExpired(at=T0 + timedelta(hours=2)))
    assert isinstance(abandoned, Transition)
    late = transition(
        abandoned.state,
        LateStop(
            transaction_id=7,
            meter_stop_wh=1500,
            stopped_at=T0 + timedelta(hours=3),
            flags=["implausible_energy", "implausible_energy"],
        ),
    )
    assert isinstance(late, Transition) and late.state.flags == ["implausible_energy"]


def test_billed_accumulates() -> None:
    stopped = state_in(Phase.STOPPED)
    result = transition(stopped, EVENTS["billed"])
    assert isinstance(result, Transition)
    assert result.state.billed_energy_wh == 500
    assert result.state.billing_event_ids == ["wf:1"]
    assert result.state.billing_sequence == 1


def test_late_stop_racing_the_abandon_bill_waits_for_both_bills() -> None:
    """The late stop can be applied before the abandon bill's Billed (same activation)."""
    abandoned = transition(state_in(Phase.CHARGING), WatchdogExpired(at=T0))
    assert isinstance(abandoned, Transition)
    late = transition(
        abandoned.state, LateStop(transaction_id=7, meter_stop_wh=4000, stopped_at=T0)
    )
    assert isinstance(late, Transition)
    assert late.state.pending_bills == 2
    first = transition(late.state, EVENTS["billed"])
    assert isinstance(first, Transition)
    assert first.state.phase == Phase.STOPPED  # the compensation is still owed
    second = transition(first.state, EVENTS["billed"].model_copy(update={"sequence": 2}))
    assert isinstance(second, Transition)
    assert second.state.phase == Phase.BILLED


def test_periodic_billed_keeps_phase_and_pending_bills() -> None:
    state = state_in(Phase.STOPPED)
    result = transition(state, EVENTS["periodic_billed"])
    assert isinstance(result, Transition)
    assert (result.state.phase, result.state.pending_bills) == (Phase.STOPPED, 1)
    assert (result.state.billed_energy_wh, result.state.billing_sequence) == (500, 1)
    assert result.state.billing_event_ids == ["wf:1"]


def test_forgotten_transaction_bills_last_good_register_flags_why_and_late_stop_compensates() -> (
    None
):
    closed = transition(
        state_in(Phase.SUSPENDED),
        TransactionClosed(at=T0 + timedelta(hours=1), reason="charger_rebooted", transaction_id=7),
    )
    assert isinstance(closed, Transition)
    assert closed.state.phase == Phase.ABANDONED
    assert closed.state.end_reason == "closed_charger_rebooted"
    assert "closed_charger_rebooted" in closed.state.flags
    assert closed.effects[0] == Bill(kind="final", register_wh=1500, at=T0 + timedelta(minutes=5))
    assert isinstance(closed.effects[1], RecordClosure)
    late = transition(
        closed.state,
        LateStop(transaction_id=7, meter_stop_wh=4000, stopped_at=T0 + timedelta(hours=3)),
    )
    assert isinstance(late, Transition)
    assert late.effects == [Bill(kind="compensation", register_wh=4000, at=T0 + timedelta(hours=3))]


def test_closure_of_another_transaction_is_rejected() -> None:
    result = transition(
        state_in(Phase.CHARGING),
        TransactionClosed(at=T0, reason="new_transaction", transaction_id=8),
    )
    assert isinstance(result, Rejection) and result.code == "wrong_transaction"


def test_force_close_with_operator_energy_bills_it_and_says_so() -> None:
    closed = transition(
        state_in(Phase.STOPPING),
        TransactionClosed(at=T0 + timedelta(hours=1), reason="operator", register_wh=3000),
    )
    assert isinstance(closed, Transition)
    assert closed.state.end_reason == "force_closed"
    assert closed.state.flags == ["force_closed", "operator_energy"]
    assert closed.effects[0] == Bill(kind="final", register_wh=3000, at=T0 + timedelta(hours=1))


def test_refused_start_still_runs_for_the_owner_and_is_flagged() -> None:
    state = SessionState(charge_box_id="CB1", origin="charger")
    started = transition(
        state,
        TransactionStarted(
            transaction_id=9,
            connector_id=1,
            id_tag="TAG1",
            meter_start_wh=0,
            started_at=T0,
            auth_status="ConcurrentTx",
            user_id="owner-1",
        ),
    )
    assert isinstance(started, Transition)
    assert started.state.phase == Phase.CHARGING
    assert started.state.user_id == "owner-1"
    assert started.state.flags == ["start_refused:ConcurrentTx"]


def test_owner_from_pre_authorization_wins_over_the_start() -> None:
    state = state_in(Phase.PRE_AUTHORIZED).model_copy(update={"user_id": "first"})
    started = transition(state, EVENTS["transaction_started"].model_copy(update={"user_id": "x"}))
    assert isinstance(started, Transition) and started.state.user_id == "first"
