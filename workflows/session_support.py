"""What ChargingSessionWorkflow needs besides its class: activity options, the carried state,
and the mapping from the gateway's messages to domain events. No I/O here either.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from activities.sessions import SessionReadModel
from domain.session import (
    MeterProgressed,
    Phase,
    PreAuthorized,
    Resumed,
    SessionState,
    Suspended,
    TransactionStarted,
)
from workflows import messages as msg

# The read model is written again when a signal changed the session during its write.
READ_MODEL_CATCH_UP_PATCH = "session-read-model-catch-up-v1"
# The read model is written by a local activity: it runs inside the workflow task that asked
# for it, so a write costs Temporal one marker event instead of three events, an activity task
# and a second workflow task. The write is idempotent (keyed by workflow id, serialised per
# session), so a local activity's at-least-once re-run after a lost workflow task is harmless.
READ_MODEL_LOCAL_PATCH = "session-read-model-local-v1"
# The session's other PostgreSQL-only activities run as local activities too: the card's
# pre-authorization (the tap's update is then answered from one workflow task, which is what
# the Authorize budget waits for), the tariff, and the billing line. Each is idempotent (the
# decision excludes the session's own claim; the tariff is a read; the line is inserted on
# conflict do nothing). Lago sends, charger commands and the watchdog's check stay activities.
DB_LOCAL_PATCH = "session-db-activities-local-v1"

# PostgreSQL activities: retried until the database is back (a session must always finish);
# each attempt is short.
DB_TIMEOUT = timedelta(seconds=15)
# A DataError (activities/db_errors.py) is raised non-retryable by the activity itself.
DB_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    non_retryable_error_types=["UnknownCharger", "ChargerNotConnected", "NoTariff"],
)
# Pre-authorization answers a waiting gateway (2 s budget by default): few, quick attempts.
AUTH_TIMEOUT = timedelta(seconds=5)
AUTH_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    maximum_interval=timedelta(seconds=1),
    maximum_attempts=3,
)
# Commands to chargers on the gateway's queue. ChargerOffline is retried a few times (the charger
# may be reconnecting); a charger's CallError or timeout is an answer, not a transient failure.
COMMAND_START_TIMEOUT = timedelta(seconds=30)
COMMAND_CLOSE_TIMEOUT = timedelta(seconds=45)
COMMAND_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=3,
    non_retryable_error_types=["ChargerTimeout", "ChargerCallError"],
)

# Lago usage events and per-session invoices. Lago down for hours is just retries (no maximum
# attempts): nothing is lost, the rows wait in PostgreSQL. What Lago refuses for good is not
# retried; the session gets a flag instead.
LAGO_TIMEOUT = timedelta(minutes=1)
LAGO_HEARTBEAT = timedelta(seconds=30)
LAGO_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=10),
    non_retryable_error_types=[
        "BillingMisconfigured",
        "NoLagoSubscription",
        "LagoRejected",
        "LagoNotFound",
    ],
)

SUSPENDED_STATUSES = frozenset({"SuspendedEV", "SuspendedEVSE"})
CHARGING_STATUS = "Charging"

# Tariff used when none is configured: energy is still recorded, nothing is charged, and the
# session carries the ``no_tariff`` flag for an operator to look at.
NO_TARIFF_CURRENCY = "XXX"


class SessionCarry(BaseModel):
    """The workflow's state across continue-as-new (``SessionInput.carry``)."""

    state: SessionState
    seen_event_ids: list[int] = Field(default_factory=list)
    last_signal_at: datetime
    abandoned_at: datetime | None = None
    auth_result: msg.PreAuthorizeResult | None = None
    # Billing (added with the Lago patch; defaults keep older carries valid).
    lago_owed: bool = False
    per_session: bool = False
    invoice: msg.InvoiceLinked | None = None
    last_periodic_at: datetime | None = None


def started_event(signal: msg.TransactionStarted) -> TransactionStarted:
    return TransactionStarted(
        transaction_id=signal.transaction_id,
        connector_id=signal.connector_id,
        id_tag=signal.id_tag,
        meter_start_wh=signal.meter_start_wh,
        started_at=signal.started_at,
        auth_status=signal.auth_status,
        user_id=signal.user_id,
    )


def progress_event(signal: msg.MeterProgress) -> MeterProgressed:
    return MeterProgressed(
        transaction_id=signal.transaction_id,
        register_wh=signal.energy_register_wh,
        at=signal.sampled_at,
    )


def connector_event(signal: msg.ConnectorStatus) -> Suspended | Resumed | None:
    if signal.status in SUSPENDED_STATUSES:
        return Suspended(at=signal.at, status=signal.status)
    if signal.status == CHARGING_STATUS:
        return Resumed(at=signal.at)
    return None


def pre_authorized_event(
    at: datetime,
    id_tag: str,
    connector_id: int | None,
    user_id: str | None,
    customer: str | None,
) -> PreAuthorized:
    return PreAuthorized(
        at=at,
        id_tag=id_tag,
        connector_id=connector_id,
        user_id=user_id,
        billing_customer_id=customer,
    )


def energy_so_far(state: SessionState) -> int:
    """Billed energy once billed; before that, the last register minus the start (never < 0)."""
    if state.billing_sequence > 0:
        return state.billed_energy_wh
    if state.meter_start_wh is None:
        return 0
    register = state.meter_stop_wh if state.meter_stop_wh is not None else state.last_register_wh
    return max(0, (register or state.meter_start_wh) - state.meter_start_wh)


def read_model_of(
    workflow_id: str,
    state: SessionState,
    invoice: msg.InvoiceLinked | None,
    *,
    with_flags: bool = False,
) -> SessionReadModel:
    """The ``charging_sessions`` row for the session as it is now.

    ``with_flags``: executions recorded before the flags column wrote rows without them; a flag
    change alone must not schedule an upsert those histories do not have.
    """
    return SessionReadModel(
        workflow_id=workflow_id,
        state=state.phase.value,
        charge_box_id=state.charge_box_id,
        connector_id=state.connector_id,
        id_tag=state.id_tag,
        transaction_id=state.transaction_id,
        user_id=state.user_id,
        energy_wh=energy_so_far(state),
        cost_minor=state.billed_amount_minor,
        currency=state.currency,
        started_at=state.started_at,
        stopped_at=state.stopped_at,
        end_reason=state.end_reason,
        lago_invoice_id=invoice.lago_invoice_id if invoice else None,
        flags=list(state.flags) if with_flags else [],
    )


def status_of(
    workflow_id: str, state: SessionState, invoice: msg.InvoiceLinked | None = None
) -> msg.SessionStatus:
    return msg.SessionStatus(
        workflow_id=workflow_id,
        state=state.phase.value,
        charge_box_id=state.charge_box_id,
        connector_id=state.connector_id,
        id_tag=state.id_tag,
        transaction_id=state.transaction_id,
        meter_start_wh=state.meter_start_wh,
        last_register_wh=state.meter_stop_wh
        if state.phase != Phase.ABANDONED and state.meter_stop_wh is not None
        else state.last_register_wh,
        energy_wh=energy_so_far(state),
        cost_minor=state.billed_amount_minor,
        currency=state.currency,
        billing_event_ids=list(state.billing_event_ids),
        end_reason=state.end_reason,
        started_at=state.started_at,
        stopped_at=state.stopped_at,
        flags=list(state.flags),
        lago_invoice_id=invoice.lago_invoice_id if invoice else None,
        invoice_number=invoice.invoice_number if invoice else None,
    )


_R = TypeVar("_R")

# What a failed activity raises in the workflow: an activity, ActivityError with the activity's
# own error as its cause; a local activity that failed for good, its ApplicationError itself.
ACTIVITY_FAILED = (ActivityError, ApplicationError)


def failure_cause(err: BaseException) -> BaseException | None:
    """The activity's own error behind ``err`` (one of :data:`ACTIVITY_FAILED`)."""
    return err.cause if isinstance(err, ActivityError) else err


async def db_activity(
    method: Callable[[Any, Any], Awaitable[_R]],
    arg: Any,
    *,
    start_to_close_timeout: timedelta,
    retry_policy: RetryPolicy,
) -> _R:
    """Run a session's PostgreSQL-only activity: a local activity from :data:`DB_LOCAL_PATCH`
    on, the activity it always was in executions recorded before it."""
    if workflow.patched(DB_LOCAL_PATCH):
        return await workflow.execute_local_activity_method(
            method, arg, start_to_close_timeout=start_to_close_timeout, retry_policy=retry_policy
        )
    return await workflow.execute_activity_method(
        method, arg, start_to_close_timeout=start_to_close_timeout, retry_policy=retry_policy
    )
