"""Energy in integer Wh: from meter registers, and from OCPP sampled values at the edge.

OCPP sends decimal strings in Wh or kWh; they are converted here, once, to integer Wh (round half
up). Everything past this module works on integers only.

Nothing here raises for a suspicious reading: a register that goes backwards, or a sample outside
the transaction window, is *flagged* (a short reason string) so the caller can keep it without
billing it. Values no charger can mean (a register past :attr:`MeterLimits.max_register_wh`, a
timestamp far from now) are a different matter: they are *refused* at the edge
(:func:`check_register`, :func:`check_timestamp` raise :class:`OutOfRange`), because stored they
would overflow a column or make a row unreadable. Energy a charger cannot have delivered in the
time it had (:func:`implausible_energy`) is kept but flagged, never billed.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from pydantic import BaseModel

ENERGY_REGISTER = "Energy.Active.Import.Register"

# Flag reasons (stored in meter_samples.flag and in session flags).
FLAG_REGISTER_BACKWARDS = "register_backwards"
FLAG_BEFORE_TRANSACTION = "before_transaction"
FLAG_AFTER_TRANSACTION = "after_transaction"
FLAG_NOT_MONOTONIC = "not_monotonic"
# More energy than the charger's maximum power could deliver in the elapsed time.
FLAG_IMPLAUSIBLE_ENERGY = "implausible_energy"

# PostgreSQL BIGINT: no register may ever exceed it, whatever the settings say.
BIGINT_MAX = 2**63 - 1
# A decimal with more digits before the point than this is refused before any arithmetic:
# Decimal's default context (28 digits) raises InvalidOperation when quantizing ~1e28.
_MAX_INTEGER_DIGITS = 20

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


class OutOfRange(ValueError):
    """A value no working charger sends: refused at the edge (OCPP PropertyConstraintViolation)."""


class MeterLimits(BaseModel):
    """What the edge accepts (from settings; the defaults are the settings' defaults).

    ``max_register_wh``: the largest energy register (10^12 Wh = 1 TWh, far above any real meter).
    ``max_past_s`` / ``max_future_s``: how far a charger's timestamp may be from now. The past is
    generous because chargers queue transaction messages for hours or days while offline.
    ``tolerance_wh``: energy allowed on top of max power × elapsed time (meter resolution, clocks).
    """

    max_register_wh: int = 10**12
    max_past_s: int = 30 * 24 * 3600
    max_future_s: int = 600
    tolerance_wh: int = 1000

    def register_bound(self) -> int:
        return min(self.max_register_wh, BIGINT_MAX)


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
    if number.adjusted() >= _MAX_INTEGER_DIGITS:
        raise OutOfRange(f"energy register out of range: {value.strip()[:40]!r}")
    try:
        return int((number * factor).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    except InvalidOperation as exc:  # belt and braces: never let a number escape as a crash
        raise OutOfRange(f"energy register out of range: {value.strip()[:40]!r}") from exc


def check_register(energy_wh: int, limits: MeterLimits) -> int:
    """``energy_wh`` if it is a register a meter can show (0 … max); :class:`OutOfRange` if not."""
    if energy_wh < 0 or energy_wh > limits.register_bound():
        raise OutOfRange(f"energy register {energy_wh} Wh is outside 0..{limits.register_bound()}")
    return energy_wh


def check_timestamp(at: datetime, now: datetime, limits: MeterLimits) -> datetime:
    """``at`` if it lies within the allowed skew of ``now``; :class:`OutOfRange` if not."""
    if at < now - timedelta(seconds=limits.max_past_s):
        raise OutOfRange(f"timestamp more than {limits.max_past_s} s in the past")
    if at > now + timedelta(seconds=limits.max_future_s):
        raise OutOfRange(f"timestamp more than {limits.max_future_s} s in the future")
    return at


def max_plausible_energy_wh(
    max_power_w: int, started_at: datetime, at: datetime, limits: MeterLimits
) -> int:
    """The most energy a charger of ``max_power_w`` can deliver from ``started_at`` to ``at``."""
    elapsed_s = max(0.0, (at - started_at).total_seconds())
    return int(max_power_w * elapsed_s // 3600) + limits.tolerance_wh


def implausible_energy(
    *,
    meter_start_wh: int,
    register_wh: int,
    started_at: datetime,
    at: datetime,
    max_power_w: int,
    limits: MeterLimits,
) -> str | None:
    """:data:`FLAG_IMPLAUSIBLE_ENERGY` when the register is further from the start than the
    charger's maximum power allows in the elapsed time; ``None`` when it is plausible."""
    allowed = max_plausible_energy_wh(max_power_w, started_at, at, limits)
    if register_wh - meter_start_wh > allowed:
        return FLAG_IMPLAUSIBLE_ENERGY
    return None


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
