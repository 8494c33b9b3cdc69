"""The contract between the gateway, the API and ChargingSessionWorkflow.

Names are pinned: renaming a Python symbol never changes what a running execution answers to.
Every payload is one pydantic model, so fields can be added later (with defaults) without
breaking histories. Clients must use :data:`config.temporal.DATA_CONVERTER` (pydantic).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from domain.authorization import AuthStatus

SESSION_WORKFLOW = "ChargingSession"

# Signals (gateway outbox relay → workflow). Each carries the outbox row id as ``event_id`` so
# a redelivered signal is recognised and ignored.
SIGNAL_TRANSACTION_STARTED = "transaction_started"
SIGNAL_METER_PROGRESS = "meter_progress"
SIGNAL_TRANSACTION_STOPPED = "transaction_stopped"
SIGNAL_CONNECTOR_STATUS = "connector_status"
# The gateway closed a transaction the charger forgot (new transaction on the connector, a
# reboot that reports the connector free).
SIGNAL_TRANSACTION_CLOSED = "transaction_closed"
# The workflow's own pre-authorization refused the card after the gateway had answered the
# charger from its local decision and the transaction had started (gateway/late_refusal.py).
SIGNAL_AUTHORIZATION_REFUSED = "authorization_refused"
# Signal (LagoWebhookWorkflow's activity → workflow): a Lago invoice bills this session.
SIGNAL_INVOICE_LINKED = "invoice_linked"

# Updates
UPDATE_PRE_AUTHORIZE = "pre_authorize"
UPDATE_REMOTE_STOP = "remote_stop"
UPDATE_FORCE_CLOSE = "force_close"

# Queries
QUERY_STATUS = "status"

AuthorizationStatus = AuthStatus  # OCPP's idTagInfo.status; one definition, in domain/
SessionOrigin = Literal["tap", "remote", "charger"]


def tap_workflow_id(charge_box_id: str, tapped_at: datetime, nonce: str) -> str:
    """Minted by the gateway when a card is tapped (Authorize), once per tap.

    The idTag is deliberately not part of it: workflow ids show in the Temporal UI, in Lago
    (usage event ids are ``<workflow id>:<sequence>``) and in logs. ``nonce`` is random (the
    caller draws it; this module does no I/O). Nothing needs to recompute the id: the tap's
    update-with-start and its ``session_intents`` row both carry the one minted id, and a resent
    StartTransaction is recognised by the journal's start identity, not by the workflow id.
    """
    return f"session:{charge_box_id}:tap:{int(tapped_at.timestamp() * 1000)}:{nonce}"


def remote_workflow_id(charge_box_id: str, request_id: str) -> str:
    """Minted by whoever asks for a remote start (API, CLI); ``request_id`` makes a retried
    request land on the same session instead of starting a second one."""
    return f"session:{charge_box_id}:remote:{request_id}"


def charger_workflow_id(
    charge_box_id: str, connector_id: int, started_at: datetime, meter_start_wh: int
) -> str:
    """Minted for a StartTransaction with no pending tap or remote intent (Authorize skipped).

    Deterministic from the start's identity, so a resent StartTransaction maps to the same run.
    """
    stamp = int(started_at.timestamp() * 1000)
    return f"session:{charge_box_id}:{connector_id}:start:{stamp}:{meter_start_wh}"


class SessionInput(BaseModel):
    """Workflow input. For continue-as-new, ``carry`` holds the state to resume from."""

    charge_box_id: str
    id_tag: str | None = None
    connector_id: int | None = None
    origin: SessionOrigin = "tap"
    requested_at: datetime | None = None
    carry: dict[str, object] | None = None
    # Timers (workflows read no settings: whoever starts the session passes them, or the
    # defaults apply). ``start_timeout_s``: pre-authorized with no StartTransaction → expired
    # (OCPP ConnectionTimeOut). ``watchdog_silence_s``: no signal for this long → check the
    # charger; if it is silent too, the session is abandoned. ``late_stop_window_s``: how long an
    # abandoned session waits for a late StopTransaction to reconcile.
    start_timeout_s: float = 180.0
    watchdog_silence_s: float = 3600.0
    late_stop_window_s: float = 7 * 24 * 3600.0
    # Continue-as-new once the history has this many events (None: only when the SDK suggests).
    continue_as_new_after_events: int | None = None
    # While charging, bill the delta since the last billed register as a ``periodic`` line (and
    # send it to Lago) every this many seconds of workflow time. None or 0: only at stop.
    periodic_billing_s: float | None = 900.0


class PreAuthorizeInput(BaseModel):
    id_tag: str
    charge_box_id: str
    connector_id: int | None = None
    # What the gateway decided locally from PostgreSQL; the workflow may only tighten it.
    local_status: AuthorizationStatus = "Accepted"


class PreAuthorizeResult(BaseModel):
    status: AuthorizationStatus
    reason: str | None = None
    parent_id_tag: str | None = None
    expiry_date: datetime | None = None


class TransactionStarted(BaseModel):
    event_id: int
    transaction_id: int
    charge_box_id: str
    connector_id: int
    id_tag: str
    meter_start_wh: int
    started_at: datetime
    auth_status: AuthorizationStatus = "Accepted"
    # The card's owner at StartTransaction (the session keeps it even if the card changes hands).
    user_id: str | None = None


class TransactionClosed(BaseModel):
    """Signal ``transaction_closed``: the gateway closed the session's transaction without a
    StopTransaction (``reason``: ``new_transaction`` | ``charger_rebooted``)."""

    event_id: int
    transaction_id: int
    reason: str
    at: datetime


class AuthorizationRefused(BaseModel):
    """Signal ``authorization_refused``: the session's pre-authorization refused the card after
    its transaction started (the charger had been answered in time from the local decision).
    The session is flagged ``start_refused:<status>`` and the charger told to stop."""

    event_id: int
    transaction_id: int
    status: AuthorizationStatus
    reason: str
    at: datetime


class MeterProgress(BaseModel):
    event_id: int
    transaction_id: int
    energy_register_wh: int
    sampled_at: datetime
    context: str | None = None


class TransactionStopped(BaseModel):
    event_id: int
    transaction_id: int
    meter_stop_wh: int
    stopped_at: datetime
    reason: str | None = None
    id_tag: str | None = None
    # Values of the stop the gateway did not trust and replaced (``gateway/stop_checks.py``):
    # ``meter_stop_out_of_range``, ``implausible_energy``, ``stop_time_out_of_range``, ...
    flags: list[str] = Field(default_factory=list)


class ConnectorStatus(BaseModel):
    event_id: int
    connector_id: int
    status: str
    error_code: str = "NoError"
    at: datetime


class RemoteStopInput(BaseModel):
    requested_by: str
    reason: str | None = None


class RemoteStopResult(BaseModel):
    accepted: bool
    message: str | None = None


# An operator-entered energy above this is a typo, not a charge (10 MWh).
MAX_OPERATOR_ENERGY_WH = 10_000_000


class ForceCloseInput(BaseModel):
    """Update ``force_close``: close the running transaction without the charger's consent."""

    requested_by: str = Field(min_length=1, max_length=255)
    reason: str = Field(min_length=1, max_length=500)
    # Bill this energy (Wh since the start) instead of the last good register the charger sent.
    energy_wh: int | None = Field(default=None, ge=0, le=MAX_OPERATOR_ENERGY_WH)


class ForceCloseResult(BaseModel):
    accepted: bool
    message: str | None = None
    billed_energy_wh: int | None = None


class SessionSummary(BaseModel):
    """What the status query and the read model row (``charging_sessions``) both say."""

    workflow_id: str
    state: str
    charge_box_id: str
    connector_id: int | None = None
    id_tag: str | None = None
    transaction_id: int | None = None
    energy_wh: int = 0
    cost_minor: int = 0
    currency: str | None = None
    end_reason: str | None = None
    started_at: datetime | None = None
    stopped_at: datetime | None = None
    # The Lago invoice that bills this session (per-session invoice, or the webhook's link).
    lago_invoice_id: str | None = None


class SessionStatus(SessionSummary):
    """What ``polaris sessions show`` and the API read from a running workflow."""

    meter_start_wh: int | None = None
    last_register_wh: int | None = None
    billing_event_ids: list[str] = Field(default_factory=list)
    flags: list[str] = Field(default_factory=list)
    invoice_number: str | None = None
    # A remote start's outcome once the charger answered: "Accepted" or why it was refused.
    remote_start: str | None = None


class InvoiceLinked(BaseModel):
    """Signal ``invoice_linked``: a Lago invoice now bills this session."""

    lago_invoice_id: str
    invoice_number: str | None = None
    # The lago_webhook_events row that linked it (None: the workflow's own per-session invoice).
    event_id: int | None = None


# -- Commands to chargers -----------------------------------------------------------------------
# Activities on the task queue ``gateway-<instance>`` of the gateway process that holds the
# charger's socket (the charger → instance map is ``chargers.gateway_instance``).

ACTIVITY_SEND_CHARGER_COMMAND = "send_charger_command"

ChargerAction = Literal[
    "RemoteStartTransaction",
    "RemoteStopTransaction",
    "UnlockConnector",
    "Reset",
    "ChangeAvailability",
    "ChangeConfiguration",
    "GetConfiguration",
    "TriggerMessage",
    "ReserveNow",
    "CancelReservation",
    "SetChargingProfile",
    "ClearChargingProfile",
    "ClearCache",
    "DataTransfer",
    "GetLocalListVersion",
    "SendLocalList",
    "GetCompositeSchedule",
    "UpdateFirmware",
    "GetDiagnostics",
    # OCPP 2.0.1 only (a 1.6 connection refuses them as BadCommand).
    "RequestStartTransaction",
    "RequestStopTransaction",
    "GetTransactionStatus",
    "GetVariables",
    "SetVariables",
    "GetBaseReport",
]


class ChargerCommandInput(BaseModel):
    charge_box_id: str
    action: ChargerAction
    # The OCPP request payload in OCPP's own camelCase field names. A secret (ChangeConfiguration
    # AuthorizationKey's value) should be "***" here, its value stashed with the operation row
    # (db/operations.py insert_operation), so it never enters a workflow history.
    payload: dict[str, object] = Field(default_factory=dict)
    timeout_s: float = 30.0
    # The charger_operations row this command advances (also the OCPP message's unique id).
    # None: derived from the calling workflow run and activity id (stable across retries).
    operation_id: str | None = None


class ChargerCommandResult(BaseModel):
    # The charger's answer payload (camelCase, as sent). Failures raise ApplicationError with
    # type ``ChargerOffline`` | ``ChargerTimeout`` | ``ChargerCallError`` (non-retryable except
    # ChargerOffline, which the caller's retry policy decides on).
    payload: dict[str, object] = Field(default_factory=dict)
