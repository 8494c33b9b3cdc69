"""Reservations: the pure rules (windows, overlaps, free slots nearby, timers, charger answers).

A reservation holds one connector for ``[starts_at, ends_at)``. Statuses::

    pending ──ReserveNow Accepted──▶ confirmed ──StartTransaction──▶ used
       │                                │
       └─▶ cancelled | failed ◀─────────┴─▶ expired (no session by the no-show deadline)

Only ``pending`` and ``confirmed`` hold the connector (the database's exclusion constraint
covers exactly these). No I/O and no clock here: times are arguments.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal

ReservationStatus = Literal["pending", "confirmed", "used", "cancelled", "failed", "expired"]
LIVE: Final = frozenset({"pending", "confirmed"})
FINAL: Final = frozenset({"used", "cancelled", "failed", "expired"})

# ReserveNow answers that fail the reservation, in words a driver can read.
REFUSALS: Final = {
    "Occupied": "the connector is in use",
    "Faulted": "the charger reports a fault",
    "Rejected": "the charger refused the reservation",
    "Unavailable": "the connector is out of service",
}
OFFLINE_REASON: Final = "the charger was offline when the reservation began"


@dataclass(frozen=True, slots=True)
class Window:
    starts_at: datetime
    ends_at: datetime

    @property
    def duration(self) -> timedelta:
        return self.ends_at - self.starts_at


@dataclass(frozen=True, slots=True)
class Slot:
    """A free window the driver could take instead (same duration), on ``connector_id``."""

    connector_id: int
    starts_at: datetime
    ends_at: datetime


def overlaps(a: Window, b: Window) -> bool:
    """Half-open windows (``[start, end)``) share an instant: the database's ``&&``."""
    return a.starts_at < b.ends_at and b.starts_at < a.ends_at


def window_issues(
    starts_at: datetime,
    duration: timedelta,
    *,
    now: datetime,
    max_ahead: timedelta,
    min_duration: timedelta,
    max_duration: timedelta,
    past_grace: timedelta = timedelta(minutes=1),
) -> list[dict[str, object]]:
    """What is wrong with a requested window (``issues`` of a 422), empty when it is fine."""
    issues: list[dict[str, object]] = []
    if starts_at.tzinfo is None:
        return [{"path": ["starts_at"], "message": "give a time zone (e.g. ...Z)"}]
    if starts_at < now - past_grace:
        issues.append({"path": ["starts_at"], "message": "the start is in the past"})
    if starts_at > now + max_ahead:
        days = max_ahead.total_seconds() / 86400
        issues.append(
            {"path": ["starts_at"], "message": f"reservations open at most {days:g} days ahead"}
        )
    if duration < min_duration:
        issues.append(
            {
                "path": ["duration_min"],
                "message": f"at least {int(min_duration.total_seconds() // 60)} minutes",
            }
        )
    if duration > max_duration:
        issues.append(
            {
                "path": ["duration_min"],
                "message": f"at most {int(max_duration.total_seconds() // 60)} minutes",
            }
        )
    return issues


def free_slots_on(
    busy: Iterable[Window], wanted: Window, *, earliest: datetime, latest: datetime
) -> list[datetime]:
    """Starts of free windows of ``wanted``'s duration on one connector, nearest to
    ``wanted.starts_at`` first (ties: the earlier), each within ``[earliest, latest]``.

    The nearest free start is always ``wanted.starts_at`` itself, ``earliest``, the end of a
    busy window, or the start of a busy window minus the duration: between those the set of
    free starts does not change its edges. So checking these candidates is complete.
    """
    taken = list(busy)
    length = wanted.duration
    candidates = {wanted.starts_at, earliest}
    for window in taken:
        candidates.add(window.ends_at)
        candidates.add(window.starts_at - length)
    free = [
        start
        for start in candidates
        if earliest <= start <= latest
        and not any(overlaps(Window(start, start + length), other) for other in taken)
    ]
    return sorted(free, key=lambda s: (abs((s - wanted.starts_at).total_seconds()), s))


def suggest_slots(
    busy_by_connector: Mapping[int, Sequence[Window]],
    wanted: Window,
    *,
    earliest: datetime,
    latest: datetime,
    limit: int = 2,
) -> list[Slot]:
    """Up to ``limit`` free windows nearest in time to ``wanted`` over the given connectors
    (distinct start times; the lowest connector for a start several connectors have free)."""
    best: dict[datetime, int] = {}
    for connector_id in sorted(busy_by_connector):
        for start in free_slots_on(
            busy_by_connector[connector_id], wanted, earliest=earliest, latest=latest
        ):
            best.setdefault(start, connector_id)
    ordered = sorted(best, key=lambda s: (abs((s - wanted.starts_at).total_seconds()), s))
    return [Slot(best[s], s, s + wanted.duration) for s in ordered[:limit]]


def reserve_now_at(starts_at: datetime, lead: timedelta) -> datetime:
    """When ReserveNow goes to the charger: ``lead`` before the start."""
    return starts_at - lead


def no_show_at(window: Window, no_show: timedelta) -> datetime:
    """When a reservation nobody used expires: ``no_show`` after the start, at most its end."""
    return min(window.ends_at, window.starts_at + no_show)


def refusal_reason(status: str) -> str:
    """The driver's words for a ReserveNow answer other than Accepted."""
    return REFUSALS.get(status, f"the charger answered {status}")


__all__ = [
    "FINAL",
    "LIVE",
    "OFFLINE_REASON",
    "REFUSALS",
    "ReservationStatus",
    "Slot",
    "Window",
    "free_slots_on",
    "no_show_at",
    "overlaps",
    "refusal_reason",
    "reserve_now_at",
    "suggest_slots",
    "window_issues",
]
