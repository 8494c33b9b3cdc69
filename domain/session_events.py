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
    # What StartTransaction answered (idTagInfo.status). A charger may keep a refused transaction
    # running: it is still billed to the card's owner, and flagged.
    auth_status: str = "Accepted"
    # The card's owner when the transaction started (frozen: a later reassignment of the card
    # never moves this session). Pre-authorization's owner, when there was one, wins.
    user_id: str | None = None


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


class TransactionClosed(BaseModel):
    """The platform closes a transaction the charger will not stop: it forgot it (a new
    transaction on the connector, a reboot that reports the connector free, a live charger whose
    connector stopped charging) or an operator force-closes it.

    ``register_wh``: bill up to this register (an operator-entered energy); ``None``: the last
    good register the charger reported.
    """

    at: datetime
    reason: str
    transaction_id: int | None = None  # None: whatever transaction the session runs
    register_wh: int | None = None
    requested_by: str | None = None
    note: str | None = None


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
    | TransactionClosed
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


class RecordClosure(BaseModel):
    """Mark the journal's transaction closed by the platform (no StopTransaction) and audit it."""

    transaction_id: int
    reason: str
    at: datetime
    requested_by: str | None = None
    note: str | None = None
    register_wh: int


Effect = SendRemoteStart | SendRemoteStop | Bill | RecordClosure
