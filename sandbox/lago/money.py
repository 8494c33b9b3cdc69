"""Money in integer minor units, and the charge models the sandbox prices."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

# ISO 4217 minor-unit exponents that differ from 2.
_EXPONENTS = {
    **dict.fromkeys(
        [
            "BIF",
            "CLP",
            "DJF",
            "GNF",
            "ISK",
            "JPY",
            "KMF",
            "KRW",
            "PYG",
            "RWF",
            "UGX",
            "VND",
            "VUV",
            "XAF",
            "XOF",
            "XPF",
        ],
        0,
    ),
    **dict.fromkeys(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"], 3),
}


def exponent(currency: str) -> int:
    return _EXPONENTS.get(currency.upper(), 2)


def to_decimal(value: Any, default: str = "0") -> Decimal:
    if value is None or value == "":
        return Decimal(default)
    try:
        result = Decimal(str(value))
    except InvalidOperation as exc:
        raise ValueError(f"not a number: {value!r}") from exc
    if not result.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return result


def to_minor(amount: Decimal, currency: str) -> int:
    """Major units (e.g. ``Decimal("1.25")`` EUR) to minor units (125), half-up."""
    return int((amount * (Decimal(10) ** exponent(currency))).quantize(Decimal(1), ROUND_HALF_UP))


def from_minor(cents: int, currency: str) -> Decimal:
    return Decimal(cents) / (Decimal(10) ** exponent(currency))


def dec_str(value: Decimal) -> str:
    """Decimal as Lago prints it: ``"12.5"``, ``"3.0"``."""
    text = format(value.normalize(), "f")
    return text if "." in text else text + ".0"


def charge_amount(charge: dict[str, Any], units: Decimal, currency: str) -> int:
    """Price ``units`` with a plan charge; returns minor units.

    Implemented models: ``standard`` (``amount`` per unit), ``package`` (``amount`` per started
    ``package_size`` after ``free_units``), ``graduated`` and ``volume`` ranges. Others price 0.
    """
    props = charge.get("properties") or {}
    model = charge.get("charge_model")
    if model == "standard":
        total = units * to_decimal(props.get("amount"))
    elif model == "package":
        size = int(props.get("package_size") or 1)
        billable = max(Decimal(0), units - Decimal(int(props.get("free_units") or 0)))
        packages = -(-billable // size) if billable > 0 else Decimal(0)
        total = Decimal(packages) * to_decimal(props.get("amount"))
    elif model == "graduated":
        total = Decimal(0)
        for rng in props.get("graduated_ranges") or []:
            low = Decimal(int(rng.get("from_value") or 0))
            high = rng.get("to_value")
            if units <= low and low > 0:
                break
            top = units if high is None else min(units, Decimal(int(high)))
            total += to_decimal(rng.get("flat_amount"))
            total += max(Decimal(0), top - low) * to_decimal(rng.get("per_unit_amount"))
    elif model == "volume":
        total = Decimal(0)
        for rng in props.get("volume_ranges") or []:
            high = rng.get("to_value")
            if high is None or units <= Decimal(int(high)):
                total = to_decimal(rng.get("flat_amount")) + units * to_decimal(
                    rng.get("per_unit_amount")
                )
                break
    else:
        total = Decimal(0)
    cents = to_minor(total, currency)
    return max(cents, int(charge.get("min_amount_cents") or 0)) if units > 0 else cents
