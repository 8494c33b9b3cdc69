"""Adaptive Cadence: how often SteVe is synchronised (docs/steve.md).

Three modes, each with its interval: **active** (every 15 minutes by default), **idle** (hourly),
**dormant** (weekly). After each sync run the scheduler *evaluates*: the run was *busy* when it
changed something (a card, an imported or closed transaction) or a charger was active since the
previous evaluation; otherwise it was *idle*.

- A busy evaluation, any charger activity and a manual trigger return to **active** at once.
- **active → idle** only after ``demote_after`` (2) idle evaluations in a row: one quiet run
  never demotes (hysteresis).
- **→ dormant** once nothing happened for ``dormant_after`` (30 days), evaluated when idle.
- Nothing but activity promotes: idle never becomes active by itself, dormant never becomes idle.

Pure: the workflow (``workflows/steve_cadence.py``) keeps the state and the clock.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

Mode = Literal["active", "idle", "dormant"]


@dataclass(frozen=True)
class CadenceRules:
    active: timedelta = timedelta(minutes=15)
    idle: timedelta = timedelta(hours=1)
    dormant: timedelta = timedelta(days=7)
    demote_after: int = 2
    dormant_after: timedelta = timedelta(days=30)

    def __post_init__(self) -> None:
        if self.demote_after < 1:
            raise ValueError("demote_after must be at least 1")
        if min(self.active, self.idle, self.dormant) <= timedelta(0):
            raise ValueError("cadence intervals must be positive")

    def interval(self, mode: Mode) -> timedelta:
        return {"active": self.active, "idle": self.idle, "dormant": self.dormant}[mode]


@dataclass(frozen=True)
class CadenceState:
    mode: Mode
    idle_streak: int
    last_activity_at: datetime


def start(at: datetime) -> CadenceState:
    """A new scheduler starts active (its start counts as activity)."""
    return CadenceState("active", 0, at)


def on_activity(state: CadenceState, at: datetime) -> CadenceState:
    """A charger did something, or an operator triggered a run: back to active."""
    return CadenceState("active", 0, max(at, state.last_activity_at))


def evaluate(state: CadenceState, *, busy: bool, at: datetime, rules: CadenceRules) -> CadenceState:
    """The state after a sync run that was ``busy`` (or not) at ``at``."""
    if busy:
        return on_activity(state, at)
    streak = state.idle_streak + 1
    if at - state.last_activity_at >= rules.dormant_after:
        return replace(state, mode="dormant", idle_streak=streak)
    if state.mode == "active" and streak >= rules.demote_after:
        return replace(state, mode="idle", idle_streak=streak)
    return replace(state, idle_streak=streak)
