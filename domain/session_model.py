"""What the charging-session state machine works on: its phases, its state, and its two answers
(:class:`Transition` and :class:`Rejection`). The function itself is ``domain/session.py``."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field

from domain.pricing import TariffTerms
from domain.session_events import Effect


class Phase(StrEnum):
    REQUESTED = "requested"
    PRE_AUTHORIZED = "pre_authorized"
    CHARGING = "charging"
    SUSPENDED = "suspended"
    STOPPING = "stopping"
    STOPPED = "stopped"
    BILLED = "billed"
    CLOSED = "closed"
    REJECTED = "rejected"
    EXPIRED = "expired"
    ABANDONED = "abandoned"


# A transaction is running on the charger (meter values flow, the watchdog is armed).
TRANSACTION_PHASES = frozenset({Phase.CHARGING, Phase.SUSPENDED, Phase.STOPPING})
# Counted against a card's concurrent-session limit.
OPEN_PHASES = frozenset({Phase.PRE_AUTHORIZED, *TRANSACTION_PHASES})
# Nothing more happens: the workflow completes.
FINAL_PHASES = frozenset({Phase.CLOSED, Phase.REJECTED, Phase.EXPIRED})


class SessionState(BaseModel):
    """Everything the workflow knows; also what continue-as-new carries."""

    phase: Phase = Phase.REQUESTED
    origin: Literal["tap", "remote", "charger"] = "tap"
    charge_box_id: str
    connector_id: int | None = None
    id_tag: str | None = None
    requested_at: datetime | None = None
    pre_authorized_at: datetime | None = None
    auth_status: str | None = None
    auth_reason: str | None = None
    user_id: str | None = None
    billing_customer_id: str | None = None
    remote_start_sent: bool = False
    transaction_id: int | None = None
    meter_start_wh: int | None = None
    started_at: datetime | None = None
    last_register_wh: int | None = None
    last_register_at: datetime | None = None
    meter_stop_wh: int | None = None
    stopped_at: datetime | None = None
    stop_reason: str | None = None
    tariff: TariffTerms | None = None
    billing_sequence: int = 0
    # Bill effects handed out and not yet answered by Billed. A late stop can arrive while the
    # abandon bill is still being recorded; the session is billed only when both are done.
    pending_bills: int = 0
    billing_event_ids: list[str] = Field(default_factory=list)
    billed_energy_wh: int = 0
    billed_amount_minor: int = 0
    currency: str | None = None
    end_reason: str | None = None
    flags: list[str] = Field(default_factory=list)


class Transition(BaseModel):
    state: SessionState
    effects: list[Effect] = Field(default_factory=list)


class Rejection(BaseModel):
    code: Literal["not_in_this_state", "final", "wrong_transaction", "not_monotonic"]
    reason: str
