"""Names and messages of the SteVe sync workflows (docs/steve.md): ``SyncRunWorkflow`` (one run:
its segments in order) and ``SteveCadenceWorkflow`` (Adaptive Cadence, the durable scheduler)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

SYNC_RUN_WORKFLOW = "SteveSyncRun"
CADENCE_WORKFLOW = "SteveCadence"
CADENCE_WORKFLOW_ID = "steve-cadence"
SIGNAL_CADENCE_ACTIVITY = "steve_activity"
SIGNAL_CADENCE_MANUAL = "steve_manual"
QUERY_CADENCE = "steve_cadence"

Segment = Literal[
    "tags", "transactions", "lago_customers", "subscriptions", "invoices", "local_reconcile"
]
# Order matters: cards first (a card's owner is what Lago bills), then the owners' Lago customers
# and subscriptions, so that the sessions the transactions segment starts can be billed; the
# invoices are read last, after the runs' closures.
SEGMENTS: tuple[Segment, ...] = (
    "tags",
    "lago_customers",
    "subscriptions",
    "transactions",
    "local_reconcile",
    "invoices",
)
Trigger = Literal["manual", "cadence", "retry"]
CadenceMode = Literal["active", "idle", "dormant"]

# A manual trigger's workflow id is the same for every click within this window (double clicks
# start one run).
MANUAL_WINDOW_S = 60


def manual_run_id(at: datetime) -> str:
    return f"steve-sync:manual:{int(at.timestamp()) // MANUAL_WINDOW_S}"


def retry_run_id(run_id: int) -> str:
    return f"steve-sync:retry:{run_id}"


class SyncRunInput(BaseModel):
    trigger: Trigger
    requested_by: str | None = None
    retry_of: int | None = None


class BeginRunInput(BaseModel):
    workflow_id: str
    trigger: Trigger
    requested_by: str | None = None
    retry_of: int | None = None


class SegmentInput(BaseModel):
    run_id: int
    segment: Segment


class SegmentResult(BaseModel):
    segment: Segment
    counters: dict[str, int] = Field(default_factory=dict)
    errors: list[dict[str, Any]] = Field(default_factory=list)
    # Something changed on either side (a card, a transaction imported or closed).
    changes: int = 0


class SegmentFailure(BaseModel):
    run_id: int
    segment: Segment
    error: str
    error_type: str | None = None


class FinishRunInput(BaseModel):
    run_id: int


class SyncRunSummary(BaseModel):
    run_id: int
    status: Literal["completed", "failed"]
    changes: int = 0
    failed_segments: list[str] = Field(default_factory=list)


class CadenceInput(BaseModel):
    """``active_s``/``idle_s``/``dormant_s``: the interval of each mode; ``demote_after``: idle
    evaluations in a row before Active becomes Idle; ``dormant_after_s``: no activity for this
    long makes it Dormant. The rest is carried over continue-as-new."""

    active_s: int = 15 * 60
    idle_s: int = 3600
    dormant_s: int = 7 * 24 * 3600
    demote_after: int = 2
    dormant_after_s: int = 30 * 24 * 3600
    mode: CadenceMode = "active"
    idle_streak: int = 0
    last_activity_at: datetime | None = None
    runs: int = 0
    last_run_id: int | None = None
    last_run_status: str | None = None
    continue_as_new_after: int = 200
    # Run once at start instead of waiting one interval.
    run_now: bool = True


class CadenceActivity(BaseModel):
    """A charger did something (the gateway's ``charger_activity`` event) or an operator asked."""

    event_id: int = 0
    charge_box_id: str | None = None
    at: datetime | None = None


class CadenceStatus(BaseModel):
    mode: CadenceMode
    interval_s: int
    idle_streak: int
    last_activity_at: datetime | None
    next_run_at: datetime | None
    runs: int
    last_run_id: int | None
    last_run_status: str | None
