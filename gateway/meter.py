"""Meter values at the edge: OCPP sampled values → integer Wh, once (pure functions).

Chargers differ: values arrive as decimal strings, units in Wh or kWh (or absent, which OCPP
defines as Wh), and many measurands other than energy. Energy registers are converted; every
other measurand is kept raw.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

DEFAULT_MEASURAND = "Energy.Active.Import.Register"
# The register the session is billed from; progress is reported on it.
BILLING_REGISTER = DEFAULT_MEASURAND

_ENERGY_FACTORS = {
    "wh": Decimal(1), "kwh": Decimal(1000), "varh": Decimal(1), "kvarh": Decimal(1000),
}


class MeterValueError(ValueError):
    """A value that should be a number is not one (mapped to an OCPP CallError by the caller)."""


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


def energy_to_wh(raw_value: str, unit: str | None) -> int:
    """``"12.3456"`` kWh → 12346 Wh (half up); missing unit means Wh."""
    factor = _ENERGY_FACTORS.get((unit or "Wh").lower())
    if factor is None:
        raise MeterValueError(f"unit {unit!r} is not an energy unit")
    try:
        value = Decimal(str(raw_value).strip())
    except InvalidOperation as exc:
        raise MeterValueError(f"{raw_value!r} is not a number") from exc
    if not value.is_finite():
        raise MeterValueError(f"{raw_value!r} is not a finite number")
    return int((value * factor).to_integral_value(rounding=ROUND_HALF_UP))


def is_energy_register(measurand: str) -> bool:
    return measurand.startswith("Energy.") and measurand.endswith(".Register")


def parse_samples(meter_value: list[dict[str, Any]], parse_time: Any) -> list[Sample]:
    """Flatten OCPP ``meterValue`` (snake_case keys, as the ocpp library hands them over).

    ``parse_time`` turns an OCPP timestamp into an aware datetime (raising on garbage).
    """
    samples: list[Sample] = []
    for entry in meter_value:
        sampled_at = parse_time(entry["timestamp"])
        for sv in entry.get("sampled_value", []):
            measurand = sv.get("measurand") or DEFAULT_MEASURAND
            unit = sv.get("unit")
            raw = str(sv["value"])
            energy: int | None = None
            problem: str | None = None
            if is_energy_register(measurand):
                if sv.get("format", "Raw") != "Raw":
                    problem = "signed_data"
                else:
                    try:
                        energy = energy_to_wh(raw, unit)
                    except MeterValueError:
                        problem = "unreadable_value"
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
    return (sample.measurand == BILLING_REGISTER and sample.phase is None
            and sample.energy_wh is not None)


def window_flag(
    sampled_at: datetime, started_at: datetime, stopped_at: datetime | None
) -> str | None:
    if sampled_at < started_at:
        return "before_transaction_start"
    if stopped_at is not None and sampled_at > stopped_at:
        return "after_transaction_stop"
    return None
