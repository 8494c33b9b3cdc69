"""The contract of the idle-fee workflow (names pinned; one pydantic model per payload).

``IdleFee`` runs once per stopped session (id ``idle-fee:<session workflow id>``). The gateway
starts it with the first connector status after the session's StopTransaction (subscription in
``gateway/subscribers.py``, event ``connector_status_after_stop``) and signals it every later
status of that connector until it ends. Only this module is imported by the gateway.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from domain.idle_fee import IdleFee, IdleFeeTerms

IDLE_FEE_WORKFLOW = "IdleFee"
# Signal to IdleFee; also the gateway outbox ``kind`` of its subscription (at most 32 chars).
SIGNAL_IDLE_STATUS = "idle_status"
QUERY_IDLE_FEE_STATE = "idle_fee_state"

ACTIVITY_IDLE_CONTEXT = "idle_fee_context"
ACTIVITY_CHARGER_SEEN = "idle_fee_charger_seen"
ACTIVITY_RECORD = "idle_fee_record"
ACTIVITY_SEND = "idle_fee_send"

# Waiting for a free connector ends after this long with no cap reached: nothing waits forever.
IDLE_WATCH_S = 24 * 3600

EndReason = Literal[
    "available",
    "new_session",
    "unavailable",
    "cap_reached",
    "watch_expired",
    "charger_offline",
    "unplugged_before_stop",
]

# A status that ends the idle time, and why: the car left (Available; Reserved only follows
# Available), a new session began on the connector, or the charger can no longer tell.
ENDING_STATUSES: dict[str, EndReason] = {
    "Available": "available",
    "Reserved": "available",
    "Preparing": "new_session",
    "Unavailable": "unavailable",
    "Faulted": "unavailable",
}


def idle_fee_workflow_id(session_workflow_id: str) -> str:
    return f"idle-fee:{session_workflow_id}"


def subscription_workflow_id(event: dict[str, Any]) -> str | None:
    """The idle-fee workflow a ``connector_status_after_stop`` event is for: the connector's last
    session, once it has stopped (None: no session known, or not stopped — skipped)."""
    session = event.get("session_workflow_id")
    if not session or not event.get("stopped_at"):
        return None
    return idle_fee_workflow_id(str(session))


def subscription_start_input(event: dict[str, Any]) -> dict[str, Any]:
    return {
        "session_workflow_id": event["session_workflow_id"],
        "charge_box_id": event["charge_box_id"],
        "connector_id": event["connector_id"],
        "transaction_id": event.get("transaction_id"),
    }


class IdleFeeInput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    session_workflow_id: str
    charge_box_id: str
    connector_id: int
    transaction_id: int | None = None
    watch_s: int = IDLE_WATCH_S


class IdleStatus(BaseModel):
    """A ``connector_status_after_stop`` event, as the relay delivers it (plus ``event_id``)."""

    model_config = ConfigDict(extra="ignore")

    event_id: int
    charge_box_id: str
    connector_id: int
    status: str
    error_code: str = "NoError"
    at: datetime
    transaction_id: int | None = None
    session_workflow_id: str | None = None
    stopped_at: datetime | None = None


class IdleFeeContext(BaseModel):
    """What the workflow needs from the database: the session's idle terms (its tariff version)
    and its stop. ``applies`` False: no idle fee for this session (``reason`` says why)."""

    applies: bool
    reason: str | None = None
    terms: IdleFeeTerms | None = None
    tariff_version_id: int | None = None
    stopped_at: datetime | None = None
    # The car was gone when the session stopped (stop reason EVDisconnected, or the connector's
    # last status before the stop was Available).
    unplugged_before_stop: bool = False


class ChargerSeen(BaseModel):
    connected: bool
    last_seen_at: datetime | None = None


class RecordIdleFeeInput(BaseModel):
    session_workflow_id: str
    charge_box_id: str
    connector_id: int
    tariff_version_id: int | None
    stopped_at: datetime
    ended_at: datetime
    end_reason: EndReason
    fee: IdleFee


class IdleFeeLineOut(BaseModel):
    """The stored line (the first record wins: a retried or replayed record changes nothing)."""

    line_id: str
    amount_minor: int
    currency: str
    end_reason: str
    idle_s: int


class SendIdleFeeInput(BaseModel):
    session_workflow_id: str


class SendIdleFeeResult(BaseModel):
    status: Literal["created", "existing", "zero_amount", "no_customer"]
    lago_invoice_id: str | None = None
    invoice_number: str | None = None


class IdleFeeState(BaseModel):
    """The query: where the workflow is."""

    phase: Literal["starting", "waiting", "billing", "done"]
    statuses: list[str]
    end_reason: str | None = None
    amount_minor: int | None = None


class IdleFeeOutcome(BaseModel):
    status: Literal["no_idle_fee", "recorded", "billed", "lago_refused"]
    reason: str | None = None
    end_reason: str | None = None
    idle_s: int = 0
    amount_minor: int = 0
    currency: str | None = None
    lago_invoice_id: str | None = None


__all__ = [
    "ACTIVITY_CHARGER_SEEN",
    "ACTIVITY_IDLE_CONTEXT",
    "ACTIVITY_RECORD",
    "ACTIVITY_SEND",
    "ENDING_STATUSES",
    "IDLE_FEE_WORKFLOW",
    "IDLE_WATCH_S",
    "QUERY_IDLE_FEE_STATE",
    "SIGNAL_IDLE_STATUS",
    "ChargerSeen",
    "EndReason",
    "IdleFeeContext",
    "IdleFeeInput",
    "IdleFeeLineOut",
    "IdleFeeOutcome",
    "IdleFeeState",
    "IdleStatus",
    "RecordIdleFeeInput",
    "SendIdleFeeInput",
    "SendIdleFeeResult",
    "idle_fee_workflow_id",
    "subscription_start_input",
    "subscription_workflow_id",
]
