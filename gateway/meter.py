"""Meter values at the edge: OCPP sampled values → integer Wh, once.

Chargers differ: values arrive as decimal strings, units in Wh or kWh (or absent, which OCPP
defines as Wh), and many measurands other than energy. The conversion and the window and
monotonicity rules are :mod:`domain.energy` (one source of truth); this module only flattens the
ocpp library's ``meterValue`` into rows and names the flags as ``meter_samples.flag`` stores them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domain.energy import (
    ENERGY_REGISTER,
    FLAG_AFTER_TRANSACTION,
    FLAG_BEFORE_TRANSACTION,
    FLAG_NOT_MONOTONIC,
    MeterLimits,
    OutOfRange,
    UnparseableSample,
    check_register,
    check_sample,
    check_timestamp,
    is_energy_register,
    parse_sampled_value,
)

DEFAULT_MEASURAND = ENERGY_REGISTER
# The register the session is billed from; progress is reported on it.
BILLING_REGISTER = ENERGY_REGISTER

# meter_samples.flag keeps the names it has always stored; the rules are the domain's.
STORED_FLAGS = {
    FLAG_BEFORE_TRANSACTION: "before_transaction_start",
    FLAG_AFTER_TRANSACTION: "after_transaction_stop",
    FLAG_NOT_MONOTONIC: "non_monotonic",
}
NON_MONOTONIC = STORED_FLAGS[FLAG_NOT_MONOTONIC]
# Problems that make a sample unstorable (a register past the limit would overflow BIGINT, a
# timestamp far from now can be unreadable once stored): MeterValues carrying one is refused with
# PropertyConstraintViolation; in a StopTransaction (always acknowledged) such samples are dropped.
OUT_OF_RANGE = "out_of_range"
TIME_OUT_OF_RANGE = "time_out_of_range"
REFUSED_PROBLEMS = frozenset({OUT_OF_RANGE, TIME_OUT_OF_RANGE})


@dataclass(frozen=True, slots=True)
class Sample:
    sampled_at: datetime
    measurand: str
    raw_value: str
    energy_wh: int | None
    unit: str | None
    phase: str | None
    context: str | None
    location: str | None
    # Why the value could not be read (kept raw, flagged, never billed).
    problem: str | None = None


def parse_samples(
    meter_value: list[dict[str, Any]],
    parse_time: Any,
    *,
    limits: MeterLimits | None = None,
    now: datetime | None = None,
) -> list[Sample]:
    """Flatten OCPP ``meterValue`` (snake_case keys, as the ocpp library hands them over).

    ``parse_time`` turns an OCPP timestamp into an aware datetime (raising on garbage). Registers
    past ``limits`` get the problem ``out_of_range`` and timestamps too far from ``now`` the
    problem ``time_out_of_range`` (see :data:`REFUSED_PROBLEMS`).
    """
    limits = limits or MeterLimits()
    samples: list[Sample] = []
    for entry in meter_value:
        sampled_at = parse_time(entry["timestamp"])
        time_problem: str | None = None
        if now is not None:
            try:
                check_timestamp(sampled_at, now, limits)
            except OutOfRange:
                time_problem = TIME_OUT_OF_RANGE
        for sv in entry.get("sampled_value", []):
            measurand = sv.get("measurand") or DEFAULT_MEASURAND
            unit = sv.get("unit")
            raw = str(sv["value"])
            energy: int | None = None
            problem: str | None = time_problem
            if problem is None and is_energy_register(measurand):
                if sv.get("format", "Raw") != "Raw":
                    problem = "signed_data"
                else:
                    try:
                        parsed = parse_sampled_value(raw, unit=unit, measurand=measurand)
                        assert parsed.energy_wh is not None
                        energy = check_register(parsed.energy_wh, limits)
                    except UnparseableSample:
                        problem = "unreadable_value"
                    except OutOfRange:
                        problem = OUT_OF_RANGE
            samples.append(
                Sample(
                    sampled_at=sampled_at,
                    measurand=measurand,
                    raw_value=raw[:64],
                    energy_wh=energy,
                    unit=unit,
                    phase=sv.get("phase"),
                    context=sv.get("context"),
                    location=sv.get("location"),
                    problem=problem,
                )
            )
    return samples


def is_billing_sample(sample: Sample) -> bool:
    """The samples that feed progress and monotonicity: the total import register."""
    return (
        sample.measurand == BILLING_REGISTER
        and sample.phase is None
        and sample.energy_wh is not None
    )


def window_flag(
    sampled_at: datetime, started_at: datetime, stopped_at: datetime | None
) -> str | None:
    """Outside the transaction window → the stored flag (domain rule: ``check_sample``)."""
    flag = check_sample(
        sampled_at=sampled_at, energy_wh=0, started_at=started_at, stopped_at=stopped_at
    )
    return STORED_FLAGS[flag] if flag is not None else None


def monotonic_flag(
    sample: Sample, started_at: datetime, low_wh: int, high_wh: int | None
) -> str | None:
    """A billing register below what came before it (domain rule) or above what came after."""
    assert sample.energy_wh is not None
    flag = check_sample(
        sampled_at=sample.sampled_at,
        energy_wh=sample.energy_wh,
        started_at=started_at,
        previous_wh=low_wh,
    )
    if flag is None and high_wh is not None:
        # Later samples are already stored: this one must not exceed them either.
        flag = check_sample(
            sampled_at=sample.sampled_at,
            energy_wh=high_wh,
            started_at=started_at,
            previous_wh=sample.energy_wh,
        )
    return STORED_FLAGS[flag] if flag is not None else None
