"""A session's meter timeline for its driver: energy (Wh since the start) and power (W) over
time, and the figures drawn from it (average and peak power).

Pure. Power at a point is the charger's own ``Power.Active.Import`` sample at that time when it
sent one (the phases summed when it only sent them per phase), else the energy register's delta
since the previous point divided by the time between them. Flagged samples (outside the
transaction, not monotonic, ...) are left out, as they are from the bill.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

ENERGY_REGISTER = "Energy.Active.Import.Register"
POWER = "Power.Active.Import"
POWER_UNITS = {"w": Decimal(1), "kw": Decimal(1000)}


@dataclass(frozen=True, slots=True)
class Sample:
    sampled_at: datetime
    measurand: str
    phase: str | None
    unit: str | None
    raw_value: str
    energy_wh: int | None
    flag: str | None


@dataclass(frozen=True, slots=True)
class TimelinePoint:
    at: datetime
    energy_wh: int  # since the session started
    power_w: int | None  # None at the first point without a power sample


def power_w(value: str, unit: str | None) -> int | None:
    factor = POWER_UNITS.get((unit or "W").strip().lower())
    try:
        number = Decimal(value.strip())
    except (InvalidOperation, AttributeError):
        return None
    if factor is None or not number.is_finite() or number < 0:
        return None
    return int(number * factor)


def _measured_power(samples: list[Sample]) -> dict[datetime, int]:
    """Power the charger reported, per timestamp: the overall value, else the phases summed."""
    overall: dict[datetime, int] = {}
    phases: dict[datetime, int] = {}
    for s in samples:
        if s.measurand != POWER or s.flag is not None:
            continue
        watts = power_w(s.raw_value, s.unit)
        if watts is None:
            continue
        if s.phase is None:
            overall[s.sampled_at] = watts
        elif not s.phase.startswith("N"):  # L1, L2, L3 (L1-N is a phase to neutral too)
            phases[s.sampled_at] = phases.get(s.sampled_at, 0) + watts
    return {**phases, **overall}


def meter_timeline(
    samples: list[Sample], *, started_at: datetime, meter_start_wh: int
) -> list[TimelinePoint]:
    """One point at the start, then one per register sample (and per power-only sample)."""
    registers: dict[datetime, int] = {}
    for s in samples:
        if (
            s.measurand == ENERGY_REGISTER
            and s.phase is None
            and s.flag is None
            and s.energy_wh is not None
            and s.sampled_at >= started_at
        ):
            registers[s.sampled_at] = s.energy_wh
    measured = {at: w for at, w in _measured_power(samples).items() if at >= started_at}
    points = [TimelinePoint(at=started_at, energy_wh=0, power_w=measured.get(started_at))]
    last_at, last_wh = started_at, meter_start_wh
    for at in sorted(set(registers) | set(measured)):
        if at == started_at:
            continue
        register = registers.get(at)
        wh = max(register, last_wh) if register is not None else last_wh
        watts = measured.get(at)
        if watts is None and register is not None:
            seconds = (at - last_at).total_seconds()
            watts = round((wh - last_wh) * 3600 / seconds) if seconds > 0 else None
        points.append(TimelinePoint(at=at, energy_wh=wh - meter_start_wh, power_w=watts))
        if register is not None:
            last_at, last_wh = at, wh
    return points


def average_power_w(energy_wh: int, duration_s: float) -> int | None:
    if duration_s <= 0:
        return None
    return round(energy_wh * 3600 / duration_s)


def peak_power_w(points: list[TimelinePoint]) -> int | None:
    values = [p.power_w for p in points if p.power_w is not None]
    return max(values) if values else None


__all__ = [
    "ENERGY_REGISTER",
    "POWER",
    "Sample",
    "TimelinePoint",
    "average_power_w",
    "meter_timeline",
    "peak_power_w",
    "power_w",
]
