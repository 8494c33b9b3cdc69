"""StopTransaction carrying values the gateway does not trust: acknowledged, kept, not billed.

Every other message with a value out of range is refused (``PropertyConstraintViolation``), but a
StopTransaction must always be acknowledged: a CallError makes a charger resend it forever and can
block its next StartTransaction, and the session would never end. So the stop is accepted, the
transaction is closed, and what could not be trusted is replaced and flagged:

* ``meterStop`` past the register limit (``meter_stop_out_of_range``) or more than the charger's
  maximum power could deliver since the start (``implausible_energy``): the session is billed up
  to the last register that passed every check (a good MeterValues sample), else nothing;
* a ``timestamp`` too far from now (``stop_time_out_of_range``): the gateway's receive time;
* ``transactionData`` samples that could not be stored (``stop_samples_out_of_range``): dropped.

The flags go to the transaction row (``stop_flags``, with the stop as sent in ``stop_payload``) and
to the workflow with the ``transaction_stopped`` signal, which adds them to the session's flags.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Charger, MeterSample, Transaction
from domain.energy import (
    FLAG_IMPLAUSIBLE_ENERGY,
    MeterLimits,
    OutOfRange,
    check_register,
    check_timestamp,
    implausible_energy,
)
from gateway.meter import BILLING_REGISTER, REFUSED_PROBLEMS, Sample

FLAG_METER_STOP_OUT_OF_RANGE = "meter_stop_out_of_range"
FLAG_STOP_TIME_OUT_OF_RANGE = "stop_time_out_of_range"
FLAG_STOP_SAMPLES_OUT_OF_RANGE = "stop_samples_out_of_range"

# The highest billing register of the transaction that passed every check.
_LAST_GOOD_REGISTER = select(func.max(MeterSample.energy_wh)).where(
    MeterSample.transaction_id == bindparam("tx"),
    MeterSample.measurand == BILLING_REGISTER,
    MeterSample.phase.is_(None),
    MeterSample.flag.is_(None),
    MeterSample.energy_wh.is_not(None),
)


@dataclass(frozen=True, slots=True)
class EdgeStop:
    """What the handler could read from the frame: ``None`` where a value was out of range."""

    meter_stop_wh: int | None
    stopped_at: datetime | None
    samples: list[Sample]
    flags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class VettedStop:
    """What the journal records and the workflow bills."""

    meter_stop_wh: int
    stopped_at: datetime
    flags: list[str]


def read_stop(
    meter_stop: int,
    stopped_at: datetime,
    samples: list[Sample],
    *,
    limits: MeterLimits,
    now: datetime,
) -> EdgeStop:
    """Check the stop's values against the limits; never raises for an out-of-range value."""
    flags: list[str] = []
    meter_stop_wh: int | None
    try:
        meter_stop_wh = check_register(meter_stop, limits)
    except OutOfRange:
        meter_stop_wh = None
        flags.append(FLAG_METER_STOP_OUT_OF_RANGE)
    at: datetime | None
    try:
        at = check_timestamp(stopped_at, now, limits)
    except OutOfRange:
        at = None
        flags.append(FLAG_STOP_TIME_OUT_OF_RANGE)
    kept = [sample for sample in samples if sample.problem not in REFUSED_PROBLEMS]
    if len(kept) != len(samples):
        flags.append(FLAG_STOP_SAMPLES_OUT_OF_RANGE)
    return EdgeStop(meter_stop_wh, at, kept, tuple(flags))


async def vet_stop(
    s: AsyncSession, tx: Transaction, stop: EdgeStop, *, limits: MeterLimits, now: datetime
) -> VettedStop:
    """Replace what cannot be billed (see the module docstring); inside the stop's transaction."""
    flags = list(stop.flags)
    stopped_at = stop.stopped_at or now
    meter_stop_wh = stop.meter_stop_wh
    if meter_stop_wh is not None:
        max_power_w = await s.scalar(
            select(Charger.max_power_w).where(Charger.charge_box_id == tx.charge_box_id)
        )
        if max_power_w is not None and implausible_energy(
            meter_start_wh=tx.meter_start_wh,
            register_wh=meter_stop_wh,
            started_at=tx.started_at,
            at=stopped_at,
            max_power_w=max_power_w,
            limits=limits,
        ):
            flags.append(FLAG_IMPLAUSIBLE_ENERGY)
            meter_stop_wh = None
    if meter_stop_wh is None:
        last_good = await s.scalar(_LAST_GOOD_REGISTER, {"tx": tx.id})
        meter_stop_wh = max(tx.meter_start_wh, last_good or tx.meter_start_wh)
    return VettedStop(meter_stop_wh, stopped_at, flags)
