"""OCPP 2.0.1 meter values onto our samples, exactly.

2.0.1 values are JSON numbers (read as ``Decimal`` by :mod:`gateway.ocpp201.frames`) with
``unitOfMeasure {unit (default Wh), multiplier (10^n, default 0)}``. The value is scaled by its
multiplier here, in decimals, and handed to the same conversion as 1.6 (``domain.energy``:
Wh / kWh to integer Wh, round half up once). A ``signedMeterValue`` travels next to a numeric
value in 2.0.1, so a signed sample is billable (unlike 1.6 ``format=SignedData``).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from domain.energy import MeterLimits
from gateway.meter import Sample, parse_samples

# Past this exponent a multiplier cannot describe a meter (the schema allows any integer).
MAX_MULTIPLIER = 12
BEGIN = "Transaction.Begin"
END = "Transaction.End"


def scaled(value: object, multiplier: object) -> str:
    """The value times 10^multiplier as a decimal string (unreadable values pass through)."""
    try:
        number = Decimal(str(value))
        power = int(multiplier) if multiplier is not None else 0  # type: ignore[call-overload]
    except (InvalidOperation, TypeError, ValueError):
        return str(value)
    if abs(power) > MAX_MULTIPLIER or not number.is_finite():
        return "NaN"
    return str(number.scaleb(power))


def as_v16(meter_value: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """2.0.1 ``meterValue`` (camelCase, Decimal numbers) in the shape ``parse_samples`` reads."""
    out: list[dict[str, Any]] = []
    for entry in meter_value:
        values = []
        for sv in entry.get("sampledValue", []):
            unit = sv.get("unitOfMeasure") or {}
            values.append(
                {
                    "value": scaled(sv.get("value"), unit.get("multiplier", 0)),
                    "unit": unit.get("unit", "Wh"),
                    "measurand": sv.get("measurand"),
                    "phase": sv.get("phase"),
                    "context": sv.get("context"),
                    "location": sv.get("location"),
                }
            )
        out.append({"timestamp": entry["timestamp"], "sampled_value": values})
    return out


def parse_samples_201(
    meter_value: list[dict[str, Any]],
    parse_time: Any,
    *,
    limits: MeterLimits,
    now: datetime,
) -> list[Sample]:
    return parse_samples(as_v16(meter_value), parse_time, limits=limits, now=now)


def register_at(samples: list[Sample], context: str) -> int | None:
    """The billing register sampled with ``context`` (Outlet or no location), if readable."""
    for sample in samples:
        if (
            sample.context == context
            and sample.measurand == "Energy.Active.Import.Register"
            and sample.phase is None
            and sample.location in (None, "Outlet")
            and sample.energy_wh is not None
            and sample.problem is None
        ):
            return sample.energy_wh
    return None


def good_registers(samples: list[Sample]) -> list[int]:
    return [
        s.energy_wh
        for s in samples
        if s.measurand == "Energy.Active.Import.Register"
        and s.phase is None
        and s.location in (None, "Outlet")
        and s.energy_wh is not None
        and s.problem is None
    ]
