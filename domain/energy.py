"""Energy in integer Wh: from meter registers, and from OCPP sampled values at the edge.

OCPP sends decimal strings in Wh or kWh; they are converted here, once, to integer Wh (round half
up). Everything past this module works on integers only.

Nothing here raises for a suspicious reading: a register that goes backwards, or a sample outside
the transaction window, is *flagged* (a short reason string) so the caller can keep it without
billing it.
"""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from pydantic import BaseModel

ENERGY_REGISTER = "Energy.Active.Import.Register"

# Flag reasons (stored in meter_samples.flag and in session flags).
FLAG_REGISTER_BACKWARDS = "register_backwards"
FLAG_BEFORE_TRANSACTION = "before_transaction"
FLAG_AFTER_TRANSACTION = "after_transaction"
FLAG_NOT_MONOTONIC = "not_monotonic"

# Energy registers in their base unit: Wh for active energy, varh for reactive (the same scale;
# OCPP's ``kWh`` / ``kvarh`` are thousands).
_UNIT_FACTORS = {
    "wh": Decimal(1),
    "kwh": Decimal(1000),
    "varh": Decimal(1),
    "kvarh": Decimal(1000),
}


class UnparseableSample(ValueError):
    """A sampled value that is not a number, or an energy register in an unknown unit."""


class EnergyReading(BaseModel):
    energy_wh: int
    flag: str | None = None


class ParsedSample(BaseModel):
    measurand: str
    unit: str | None
    # Set for energy registers only (Wh, integer); other measurands keep just the raw value.
    energy_wh: int | None
    raw_value: str


def energy_between(meter_start_wh: int, meter_stop_wh: int) -> EnergyReading:
    """Energy delivered between two register readings; never negative.

    A register that went backwards (meter replaced, firmware reset) yields 0 Wh and a flag.
    """
    if meter_stop_wh < meter_start_wh:
        return EnergyReading(energy_wh=0, flag=FLAG_REGISTER_BACKWARDS)
    return EnergyReading(energy_wh=meter_stop_wh - meter_start_wh)


def is_energy_register(measurand: str) -> bool:
    """``Energy.{Active,Reactive}.{Import,Export}.Register``: a register to convert to Wh."""
    return measurand.startswith("Energy.") and measurand.endswith(".Register")


def to_wh(value: str, unit: str | None = None) -> int:
    """Convert an OCPP decimal string in Wh (the default) or kWh to integer Wh (round half up).

    Reactive registers in varh / kvarh are scaled the same way (to integer varh).
    """
    factor = _UNIT_FACTORS.get((unit or "Wh").strip().lower())
    if factor is None:
        raise UnparseableSample(f"not an energy unit: {unit!r}")
    try:
        number = Decimal(value.strip())
    except (InvalidOperation, AttributeError) as exc:
        raise UnparseableSample(f"not a number: {value!r}") from exc
    if not number.is_finite():
        raise UnparseableSample(f"not a finite number: {value!r}")
    return int((number * factor).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def parse_sampled_value(
    value: str, *, unit: str | None = None, measurand: str | None = None
) -> ParsedSample:
    """Parse one OCPP ``sampledValue`` entry.

    ``measurand`` defaults to ``Energy.Active.Import.Register`` and ``unit`` to ``Wh``, as in
    OCPP 1.6. Energy registers (any ``Energy.*.Register``) are converted; other measurands are
    returned with ``energy_wh=None``.
    """
    name = measurand or ENERGY_REGISTER
    if not is_energy_register(name):
        return ParsedSample(measurand=name, unit=unit, energy_wh=None, raw_value=value)
    return ParsedSample(measurand=name, unit=unit, energy_wh=to_wh(value, unit), raw_value=value)


def check_sample(
    *,
    sampled_at: datetime,
    energy_wh: int,
    started_at: datetime,
    stopped_at: datetime | None = None,
    previous_wh: int | None = None,
) -> str | None:
    """Why a register sample must not be billed, or ``None`` when it is fine.

    It must fall inside the transaction window ``[started_at, stopped_at]`` and must not be lower
    than the previous register of the same transaction.
    """
    if sampled_at < started_at:
        return FLAG_BEFORE_TRANSACTION
    if stopped_at is not None and sampled_at > stopped_at:
        return FLAG_AFTER_TRANSACTION
    if previous_wh is not None and energy_wh < previous_wh:
        return FLAG_NOT_MONOTONIC
    return None
