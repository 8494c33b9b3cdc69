"""The idle fee: a car that stays plugged in after its session stopped occupies the connector.

Rule (integer minor units, one rounding):

* the idle time runs from the session's stop to the moment the connector is free again
  (``Available``), in whole seconds; a negative span (clocks disagreeing) counts as 0;
* the first ``grace_s`` seconds are free;
* each second after that costs ``price_per_minute_minor / 60`` (pro rata to the second, like the
  per-minute energy price in :mod:`domain.pricing`), and the sum is rounded half up once;
* ``cap_minor`` (when set) bounds the fee; a tariff with ``price_per_minute_minor == 0`` has no
  idle fee at all.

The fee never decreases when the idle time grows, never exceeds the cap, and is 0 within the
grace period. :func:`idle_fee_line_id` is the line's deterministic id (one idle fee per session):
a retried send is the same line for Lago.

:func:`seconds_to_cap` is the idle time at which the fee reaches the cap: the ``IdleFee``
workflow (``workflows/idle_fee.py``) bills the cap then, without waiting for the connector to be
free (the fee cannot grow any more). The tariff fields live on ``tariff_versions``; the workflow,
its gateway subscription and the Lago line are walked through in ``docs/extending.md``.
"""

from __future__ import annotations

from fractions import Fraction

from pydantic import BaseModel, Field

from domain.pricing import round_half_up


class IdleFeeTerms(BaseModel):
    currency: str = Field(min_length=3, max_length=3)
    grace_s: int = Field(default=0, ge=0)
    price_per_minute_minor: int = Field(default=0, ge=0)
    cap_minor: int | None = Field(default=None, ge=0)

    @property
    def applies(self) -> bool:
        return self.price_per_minute_minor > 0 and self.cap_minor != 0


class IdleFee(BaseModel):
    currency: str
    idle_s: int
    billed_s: int
    amount_minor: int
    capped: bool


def idle_fee(terms: IdleFeeTerms, *, idle_s: int) -> IdleFee:
    """The fee for ``idle_s`` seconds between the stop and the connector being free."""
    idle_s = max(0, idle_s)
    billed_s = max(0, idle_s - terms.grace_s) if terms.applies else 0
    amount = round_half_up(Fraction(billed_s * terms.price_per_minute_minor, 60))
    capped = terms.cap_minor is not None and amount > terms.cap_minor
    if capped:
        assert terms.cap_minor is not None
        amount = terms.cap_minor
    return IdleFee(
        currency=terms.currency,
        idle_s=idle_s,
        billed_s=billed_s,
        amount_minor=amount,
        capped=capped,
    )


def seconds_to_cap(terms: IdleFeeTerms) -> int | None:
    """The shortest idle time whose fee is the cap (None: no cap, or no fee at all).

    The fee of ``billed_s`` seconds is ``round_half_up(billed_s * price / 60)``; it reaches
    ``cap`` once ``billed_s * price / 60 >= cap - 1/2``, i.e. after
    ``ceil((2 * cap - 1) * 30 / price)`` billed seconds."""
    if not terms.applies or terms.cap_minor is None:
        return None
    numerator = (2 * terms.cap_minor - 1) * 30
    billed_s = -(-numerator // terms.price_per_minute_minor)
    return terms.grace_s + billed_s


def idle_fee_line_id(session_workflow_id: str) -> str:
    """The idle-fee line of a session: one per session, the same on every retry."""
    return f"{session_workflow_id}:idle-fee"
