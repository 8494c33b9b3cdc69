"""Turn a ``Bill`` effect into the next billing line (pure).

Every line bills the *cumulative* usage up to a register, minus what earlier lines billed, so
however a session was billed (a final bill at abandon, then a compensation after a late stop),
the lines sum to the price of the true usage, and each Wh is billed exactly once.

Billing ids are deterministic, ``<workflow id>:<sequence>`` with the sequence starting at 1, so a
retried activity or a replayed workflow produces the same ids (Lago deduplicates on them).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from domain.energy import energy_between
from domain.pricing import TariffTerms, price_session
from domain.session import SessionState

BillingKind = Literal["periodic", "final", "compensation"]


class BillingLine(BaseModel):
    sequence: int
    kind: BillingKind
    energy_wh: int
    amount_minor: int
    currency: str
    occurred_at: datetime
    # Usage covered by this and all earlier lines.
    cumulative_energy_wh: int
    cumulative_amount_minor: int


def billing_event_id(workflow_id: str, sequence: int) -> str:
    return f"{workflow_id}:{sequence}"


def next_billing_line(
    state: SessionState,
    *,
    kind: BillingKind,
    register_wh: int,
    at: datetime,
    tariff: TariffTerms,
) -> BillingLine | None:
    """The line still owed, or ``None`` when a compensation or a periodic line has nothing to bill.

    ``periodic`` lines bill the delta up to the latest register while the transaction runs; the
    ``final`` line at stop is then the remainder, so all lines sum to meter stop − meter start.
    """
    if state.meter_start_wh is None or state.started_at is None:
        raise ValueError("nothing to bill: the session never started")
    energy_wh = energy_between(state.meter_start_wh, register_wh).energy_wh
    duration_s = max(0, int((at - state.started_at).total_seconds()))
    total = price_session(tariff, energy_wh=energy_wh, duration_s=duration_s).total_minor
    delta_wh = max(0, energy_wh - state.billed_energy_wh)
    delta_minor = max(0, total - state.billed_amount_minor)
    if kind != "final" and delta_wh == 0 and delta_minor == 0:
        return None
    return BillingLine(
        sequence=state.billing_sequence + 1,
        kind=kind,
        energy_wh=delta_wh,
        amount_minor=delta_minor,
        currency=tariff.currency,
        occurred_at=at,
        cumulative_energy_wh=state.billed_energy_wh + delta_wh,
        cumulative_amount_minor=state.billed_amount_minor + delta_minor,
    )
