"""Events the session state machine consumes, effects it asks for, and its two results.

See :mod:`domain.session` for the machine itself.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from domain.pricing import TariffTerms

# -- Events ---------------------------------------------------------------------------------------


class PreAuthorized(BaseModel):
    at: datetime
    id_tag: str
    connector_id: int | None = None
    user_id: str | None = None
    billing_customer_id: str | None = None


class AuthorizationRejected(BaseModel):
    at: datetime
    status: str
    reason: str | None = None


class RemoteStartRequested(BaseModel):
    at: datetime


class RemoteStartFailed(BaseModel):
    at: datetime
    reason: str


class TransactionStarted(BaseModel):
    transaction_id: int
    connector_id: int
    id_tag: str
    meter_start_wh: int
    started_at: datetime


class MeterProgressed(BaseModel):
    transaction_id: int
    register_wh: int
    at: datetime


class Suspended(BaseModel):
    at: datetime
    status: str = "SuspendedEV"


class Resumed(BaseModel):
    at: datetime


class StopRequested(BaseModel):
    at: datetime
    requested_by: str


class RemoteStopFailed(BaseModel):
    at: datetime
    reason: str


class TransactionStopped(BaseModel):
    transaction_id: int
    meter_stop_wh: int
    stopped_at: datetime
    reason: str | None = None
    # What the gateway did not trust in the stop (it replaced those values); become session flags.
    flags: list[str] = Field(default_factory=list)


class StartTimedOut(BaseModel):
    at: datetime


class WatchdogExpired(BaseModel):
    at: datetime


class Billed(BaseModel):
    """A bill was recorded (or nothing was owed: ``event_id`` is ``None``)."""

    at: datetime
    sequence: int
    event_id: str | None
    energy_wh: int
    amount_minor: int
    currency: str
    tariff: TariffTerms


class PeriodicBilled(BaseModel):
    """A ``periodic`` line was recorded while the transaction runs (long sessions).

    Unlike :class:`Billed` it answers no ``Bill`` effect: the workflow bills periodic deltas on
    its own timer, so the phase and ``pending_bills`` stay as they are.
    """

    at: datetime
    sequence: int
    event_id: str
    energy_wh: int
    amount_minor: int
    currency: str
    tariff: TariffTerms


class LateStop(BaseModel):
    """A StopTransaction that arrived after the watchdog abandoned the session."""

    transaction_id: int
    meter_stop_wh: int
    stopped_at: datetime
    reason: str | None = None
    flags: list[str] = Field(default_factory=list)


class Close(BaseModel):
    at: datetime


Event = (
    PreAuthorized
    | AuthorizationRejected
    | RemoteStartRequested
    | RemoteStartFailed
    | TransactionStarted
    | MeterProgressed
    | Suspended
    | Resumed
    | StopRequested
    | RemoteStopFailed
    | TransactionStopped
    | StartTimedOut
    | WatchdogExpired
    | Billed
    | PeriodicBilled
    | LateStop
    | Close
)

# -- Effects and results --------------------------------------------------------------------------


class SendRemoteStart(BaseModel):
    id_tag: str
    connector_id: int | None


class SendRemoteStop(BaseModel):
    transaction_id: int


class Bill(BaseModel):
    """Bill the usage up to ``register_wh`` at ``at`` (minus what was billed already)."""

    kind: Literal["final", "compensation"]
    register_wh: int
    at: datetime


Effect = SendRemoteStart | SendRemoteStop | Bill
