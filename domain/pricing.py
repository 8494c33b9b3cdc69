"""Price a charging session from a tariff, in integer minor units.

Rounding rule (one rounding, on the total):

* ``energy_exact = energy_wh x price_per_kwh_minor / 1000`` and
  ``time_exact = duration_s x price_per_minute_minor / 60`` are kept as exact fractions
  (per-minute prices are pro rata to the second, no minute rounding);
* ``total_minor = round_half_up(energy_exact + time_exact) + session_minor``, where
  ``session_minor`` is the per-session fee, or 0 for a session below the tariff's minimum energy
  or minimum duration (``session_fee_min_energy_wh`` / ``session_fee_min_duration_s``: a car
  that took nothing is not charged the fee unless the tariff sets both minimums to 0);
* ``energy_minor = round_half_up(energy_exact)`` and ``time_minor`` is the remainder
  ``total_minor - session_minor - energy_minor``, so the parts always sum to the total exactly.

Because rounding is monotonic and every price is non-negative, the total never decreases when the
energy or the duration grows, and ``time_minor`` is never negative.

Incremental billing (a first bill, then a compensation) uses :func:`price_delta`: the second
amount is ``price(total usage) - already billed``, so the sum of all bills equals the price of the
true usage, whatever was billed first.
"""

from __future__ import annotations

from fractions import Fraction

from pydantic import BaseModel, Field


class TariffTerms(BaseModel):
    code: str = "default"
    currency: str = Field(min_length=3, max_length=3)
    price_per_kwh_minor: int = Field(default=0, ge=0)
    price_per_minute_minor: int = Field(default=0, ge=0)
    price_per_session_minor: int = Field(default=0, ge=0)
    # Below either minimum no per-session fee applies. 0 here (terms carried by sessions that
    # started before these settings existed keep their price); tariffs rows default to 1 Wh.
    session_fee_min_energy_wh: int = Field(default=0, ge=0)
    session_fee_min_duration_s: int = Field(default=0, ge=0)


class SessionPrice(BaseModel):
    currency: str
    energy_minor: int
    time_minor: int
    session_minor: int
    total_minor: int


def round_half_up(value: Fraction) -> int:
    """Round a non-negative fraction to the nearest integer, halves away from zero."""
    if value < 0:
        raise ValueError("only non-negative amounts are rounded here")
    return (2 * value.numerator + value.denominator) // (2 * value.denominator)


def price_session(tariff: TariffTerms, *, energy_wh: int, duration_s: int) -> SessionPrice:
    """The price of one session; ``energy_wh`` and ``duration_s`` must be non-negative."""
    if energy_wh < 0 or duration_s < 0:
        raise ValueError("energy and duration must not be negative")
    energy_exact = Fraction(energy_wh * tariff.price_per_kwh_minor, 1000)
    time_exact = Fraction(duration_s * tariff.price_per_minute_minor, 60)
    variable = round_half_up(energy_exact + time_exact)
    energy_minor = round_half_up(energy_exact)
    fee_applies = (
        energy_wh >= tariff.session_fee_min_energy_wh
        and duration_s >= tariff.session_fee_min_duration_s
    )
    session_minor = tariff.price_per_session_minor if fee_applies else 0
    return SessionPrice(
        currency=tariff.currency,
        energy_minor=energy_minor,
        time_minor=variable - energy_minor,
        session_minor=session_minor,
        total_minor=variable + session_minor,
    )


def price_delta(
    tariff: TariffTerms, *, energy_wh: int, duration_s: int, already_billed_minor: int
) -> int:
    """What is still owed for the whole usage so far, given what was already billed (≥ 0)."""
    total = price_session(tariff, energy_wh=energy_wh, duration_s=duration_s).total_minor
    return max(0, total - already_billed_minor)
