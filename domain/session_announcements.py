"""Which platform events a write of a session's read model announces.

The read model (``charging_sessions``) is written by the session workflow's activity, which may
run more than once for the same row (retries, replays): events are derived from what the write
*changed* (the row before and after, in one transaction), so a repeated write announces nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from domain.events import SESSION_BILLED, SESSION_STARTED, SESSION_STOPPED, SESSION_UPDATED

# The session's charge is over (abandoned: the charger went silent mid-transaction).
ENDED_STATES = frozenset({"stopped", "billed", "closed", "abandoned"})
BILLED_STATES = frozenset({"billed", "closed"})


@dataclass(frozen=True, slots=True)
class RowFacts:
    state: str
    energy_wh: int
    started_at: datetime | None


def session_events(
    before: RowFacts | None,
    after: RowFacts,
    *,
    progress_due: bool,
) -> list[str]:
    """The event types, in order, for a write that turned ``before`` (None: no row yet) into
    ``after``. ``progress_due``: the meter-progress throttle allows a ``session.updated`` for an
    energy change alone."""
    if before == after:
        return []
    old_state = before.state if before else None
    events: list[str] = []
    if after.started_at is not None and (before is None or before.started_at is None):
        events.append(SESSION_STARTED)
    if after.state in ENDED_STATES and old_state not in ENDED_STATES:
        if after.started_at is not None:
            events.append(SESSION_STOPPED)
        else:
            events.append(SESSION_UPDATED)
    # Billed once: entering ``billed`` (or ``closed`` straight from ``stopped``, when both
    # happened between two writes). An abandoned session closes unbilled.
    if (
        after.state in BILLED_STATES
        and old_state not in BILLED_STATES
        and old_state != "abandoned"
        and after.started_at is not None
    ):
        events.append(SESSION_BILLED)
    if events:
        return events
    if old_state != after.state:
        return [SESSION_UPDATED]
    if before is not None and before.energy_wh != after.energy_wh and progress_due:
        return [SESSION_UPDATED]
    return []


__all__ = ["BILLED_STATES", "ENDED_STATES", "RowFacts", "session_events"]
