"""Site load management: dividing a site's power limit among its charging sessions (pure).

Quantities are integers in the site's unit: watts (``W``) for a limit in kW, amperes per phase
(``A``) for a limit in A; :func:`charger_max` converts a charger's ``max_power_w`` into it.

The rule (:func:`allocate`):

1. **Minimums first, oldest first.** Sessions are taken in arrival order while the sum of their
   minimums fits the limit. The first session whose minimum no longer fits, and every session
   after it, is *paused*: it gets 0 (a TxProfile limit of 0 suspends charging). Newest sessions
   are paused because the older ones were promised their share first; a paused session resumes
   as soon as a departure frees room for its minimum.
2. **Fair share (water-filling).** Every admitted session ``i`` gets ``clamp(level, min_i,
   max_i)`` for the highest common ``level`` whose sum still fits; what the integer level leaves
   over goes one unit each to the sessions that can still take more, oldest first. So sessions
   capped by their own maximum take what they can use and the rest is shared equally among the
   others (within one unit).

A session's minimum above its maximum is lowered to its maximum (a 3.7 kW charger is not
refused because the site's minimum is 4.1 kW).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

LoadUnit = Literal["W", "A"]
UNITS: tuple[LoadUnit, ...] = ("W", "A")
# The usual minimum a connector needs to charge at all (IEC 61851: 6 A).
MIN_CURRENT_A = 6
DEFAULT_VOLTAGE_V = 230


@dataclass(frozen=True, slots=True)
class Demand:
    """One active session wanting power. ``order`` sorts arrivals (older first), ``key`` breaks
    ties and names the session in the result."""

    key: str
    max: int
    min: int
    order: int = 0


@dataclass(frozen=True, slots=True)
class Allocation:
    key: str
    limit: int
    paused: bool


def _clamp(level: int, low: int, high: int) -> int:
    return max(low, min(level, high))


def allocate(limit: int, demands: Sequence[Demand]) -> dict[str, Allocation]:
    """Each session's limit (see the module docstring). ``sum(limits) <= max(limit, 0)``."""
    budget = max(limit, 0)
    ordered = sorted(demands, key=lambda d: (d.order, d.key))
    bounds: list[tuple[Demand, int, int]] = []  # admitted: (demand, low, high)
    out: dict[str, Allocation] = {}
    floor_sum = 0
    blocked = False
    for d in ordered:
        high = max(d.max, 0)
        low = min(max(d.min, 0), high)
        if not blocked and floor_sum + low <= budget:
            bounds.append((d, low, high))
            floor_sum += low
        else:
            blocked = True  # later arrivals never jump the queue of a paused one
            out[d.key] = Allocation(d.key, 0, True)
    if not bounds:
        return out

    def total(level: int) -> int:
        return sum(_clamp(level, low, high) for _, low, high in bounds)

    lo, hi = 0, max(high for _, _, high in bounds)
    # The highest level whose total fits (total(0) == floor_sum <= budget, so lo is valid).
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if total(mid) <= budget:
            lo = mid
        else:
            hi = mid - 1
    level = lo
    spare = budget - total(level)
    for d, low, high in bounds:
        given = _clamp(level, low, high)
        if spare > 0 and _clamp(level + 1, low, high) > given:
            given += 1
            spare -= 1
        out[d.key] = Allocation(d.key, given, False)
    return out


def watts_per_unit(unit: LoadUnit, *, phases: int, voltage_v: int) -> int:
    """How many watts one unit of the site's limit is (1 for W; phases × voltage for A)."""
    return 1 if unit == "W" else phases * voltage_v


def charger_max(max_power_w: int, unit: LoadUnit, *, phases: int, voltage_v: int) -> int:
    """A charger's maximum in the site's unit (A rounded down)."""
    return max_power_w // watts_per_unit(unit, phases=phases, voltage_v=voltage_v)


def default_minimum(unit: LoadUnit, *, phases: int, voltage_v: int) -> int:
    """6 A per phase, in the site's unit (4140 W on three phases of 230 V)."""
    return MIN_CURRENT_A * (1 if unit == "A" else phases * voltage_v)


def as_watts(value: int, unit: LoadUnit, *, phases: int, voltage_v: int) -> int:
    return value * watts_per_unit(unit, phases=phases, voltage_v=voltage_v)


__all__ = [
    "DEFAULT_VOLTAGE_V",
    "MIN_CURRENT_A",
    "UNITS",
    "Allocation",
    "Demand",
    "LoadUnit",
    "allocate",
    "as_watts",
    "charger_max",
    "default_minimum",
    "watts_per_unit",
]
