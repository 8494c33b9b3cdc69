"""MeterValues into ``meter_samples``: one batched insert, flags instead of silent billing.

A sample is flagged (kept, never billed) when it falls outside its transaction's window, when
the billing register goes backwards, or when it shows more energy than the charger's maximum
power could deliver since the start (``implausible_energy``). The workflow hears only throttled
progress, of unflagged samples only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import bindparam, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Charger, MeterSample, Transaction
from domain.energy import MeterLimits, implausible_energy
from gateway import load_trigger, open_transactions
from gateway.meter import (
    BILLING_REGISTER,
    Sample,
    is_billing_sample,
    monotonic_flag,
    window_flag,
)
from gateway.open_transactions import OpenTransaction, OpenTransactions, TransactionView
from gateway.outbox import enqueue
from workflows.messages import SIGNAL_METER_PROGRESS, MeterProgress, SessionInput

BOUNDARY_CONTEXTS = frozenset({"Transaction.Begin", "Transaction.End"})


# Highest good register at or before :at and lowest good register after it, and the charger's
# maximum power, in one round trip. Built once: this runs for every billing sample, and building
# the expression each time was a tenth of the gateway's CPU under load.
_MAX_POWER = (
    select(Charger.max_power_w).where(Charger.charge_box_id == bindparam("cb")).scalar_subquery()
)
_NEIGHBOURS = select(
    func.max(MeterSample.energy_wh).filter(MeterSample.sampled_at <= bindparam("at")),
    func.min(MeterSample.energy_wh).filter(MeterSample.sampled_at > bindparam("at")),
    _MAX_POWER,
).where(
    MeterSample.transaction_id == bindparam("tx"),
    MeterSample.measurand == BILLING_REGISTER,
    MeterSample.phase.is_(None),
    MeterSample.flag.is_(None),
    MeterSample.energy_wh.is_not(None),
)


# Core, not ORM: the rows are plain dicts and nothing reads them back.
_INSERT_SAMPLES = insert(MeterSample.__table__)  # type: ignore[arg-type]


async def _neighbours(
    s: AsyncSession, tx: Transaction | TransactionView, at: datetime
) -> tuple[int, int | None, int | None]:
    """Highest good register at or before ``at``, lowest good register after it, and the
    charger's maximum power (None when the charger row is gone)."""
    before, after, max_power_w = (
        await s.execute(_NEIGHBOURS, {"tx": tx.id, "at": at, "cb": tx.charge_box_id})
    ).one()
    low = max(tx.meter_start_wh, before if before is not None else tx.meter_start_wh)
    high = after
    if tx.meter_stop_wh is not None and tx.stopped_at is not None and at <= tx.stopped_at:
        high = tx.meter_stop_wh if high is None else min(high, tx.meter_stop_wh)
    return low, high, max_power_w


async def flush(s: AsyncSession, sink: list[dict[str, object]]) -> None:
    """Insert the rows gathered in ``sink`` (one statement for a whole group commit)."""
    if sink:
        await s.execute(_INSERT_SAMPLES, sink)
        sink.clear()


async def store_samples(
    s: AsyncSession,
    *,
    charge_box_id: str,
    connector_id: int,
    tx: Transaction | TransactionView | None,
    transaction_id: int | None,
    samples: list[Sample],
    progress_gate: Callable[[int, bool], bool],
    limits: MeterLimits | None = None,
    known: OpenTransaction | None = None,
    sink: list[dict[str, object]] | None = None,
) -> int:
    """Insert samples (flagged as needed) and queue progress; returns the number of events.

    ``known``: the open transaction as its connection remembers it (advanced here with every
    good sample); a billing sample at or after its latest good sample is checked against it
    without a query. ``sink``: gather the rows there instead of inserting them (the caller
    flushes them before its transaction commits)."""
    limits = limits or MeterLimits()
    rows: list[dict[str, object]] = [] if sink is None else sink
    good: list[tuple[datetime, int, str | None]] = []
    for sample in sorted(samples, key=lambda x: x.sampled_at):
        flag: str | None = sample.problem
        if flag is not None:
            pass
        elif transaction_id is not None and tx is None:
            flag = "unknown_transaction"
        elif tx is not None:
            flag = window_flag(sample.sampled_at, tx.started_at, tx.stopped_at)
            if flag is None and is_billing_sample(sample):
                assert sample.energy_wh is not None
                if known is not None and (
                    known.good_at is None or sample.sampled_at >= known.good_at
                ):
                    # Newer than every good sample stored: nothing after it, the highest before.
                    low, high, max_power_w = known.good_wh, None, known.max_power_w
                else:
                    if sink is not None:
                        await flush(s, sink)  # the neighbour query sees this batch's rows
                    low, high, max_power_w = await _neighbours(s, tx, sample.sampled_at)
                for at, wh, _ in good:
                    if at <= sample.sampled_at:
                        low = max(low, wh)
                flag = monotonic_flag(sample, tx.started_at, low, high)
                if flag is None and max_power_w is not None:
                    flag = implausible_energy(
                        meter_start_wh=tx.meter_start_wh,
                        register_wh=sample.energy_wh,
                        started_at=tx.started_at,
                        at=sample.sampled_at,
                        max_power_w=max_power_w,
                        limits=limits,
                    )
                if flag is None:
                    good.append((sample.sampled_at, sample.energy_wh, sample.context))
                    if known is not None:
                        known.advance(sample.sampled_at, sample.energy_wh)
        rows.append(
            {
                "transaction_id": transaction_id,
                "charge_box_id": charge_box_id,
                "connector_id": connector_id,
                "sampled_at": sample.sampled_at,
                "measurand": sample.measurand[:64],
                "phase": sample.phase,
                "unit": sample.unit,
                "context": sample.context,
                "raw_value": sample.raw_value,
                "energy_wh": sample.energy_wh,
                "flag": flag,
            }
        )
    if sink is None:
        await flush(s, rows)
    if tx is None or not good:
        return 0
    start = SessionInput(
        charge_box_id=charge_box_id,
        connector_id=tx.connector_id,
        id_tag=tx.id_tag,
        origin="charger",
    )
    events = 0
    boundary = [g for g in good if g[2] in BOUNDARY_CONTEXTS]
    latest = good[-1]
    chosen = boundary + ([latest] if latest not in boundary and progress_gate(tx.id, False) else [])
    for at, wh, context in chosen:
        if context in BOUNDARY_CONTEXTS:
            progress_gate(tx.id, True)
        await enqueue(
            s,
            workflow_id=tx.workflow_id,
            kind=SIGNAL_METER_PROGRESS,
            start=start,
            signal=MeterProgress(
                event_id=0,
                transaction_id=tx.id,
                energy_register_wh=wh,
                sampled_at=at,
                context=context,
            ),
        )
        events += 1
    return events


async def record_in(
    s: AsyncSession,
    *,
    charge_box_id: str,
    connector_id: int,
    transaction_id: int | None,
    samples: list[Sample],
    progress_gate: Callable[[int, bool], bool],
    limits: MeterLimits | None = None,
    remembered: OpenTransactions | None = None,
    sink: list[dict[str, object]] | None = None,
) -> tuple[int, OpenTransaction | None]:
    """Journal one MeterValues message inside the caller's transaction.

    Returns the number of outbox events and, for an open transaction, what its connection is to
    remember once the caller's transaction has committed (``remembered``: what it remembers
    now; see :mod:`gateway.open_transactions`)."""
    tx: Transaction | TransactionView | None = None
    known: OpenTransaction | None = None
    if transaction_id is not None:
        known = remembered.get(transaction_id) if remembered is not None else None
        if known is not None and known.tx.charge_box_id == charge_box_id:
            tx = known.tx
        else:
            clock = remembered.clock if remembered is not None else time.monotonic
            tx, known = await open_transactions.load(s, charge_box_id, transaction_id, clock())
    elif connector_id > 0:
        # Some firmwares omit transactionId: attribute to the open transaction, if any.
        tx = (
            await s.execute(
                select(Transaction)
                .where(
                    Transaction.charge_box_id == charge_box_id,
                    Transaction.connector_id == connector_id,
                    Transaction.stopped_at.is_(None),
                )
                .order_by(Transaction.id.desc())
                .limit(1)
            )
        ).scalar_one_or_none()
        transaction_id = tx.id if tx is not None else None
    events = 0
    # A charger offering less than its site's plan gave it: the plan shares the rest.
    if (
        tx is not None
        and tx.stopped_at is None
        and connector_id > 0
        and await load_trigger.record_offered(
            s,
            charge_box_id=charge_box_id,
            connector_id=connector_id,
            transaction_id=tx.id,
            samples=samples,
        )
    ):
        events += 1
    events += await store_samples(
        s,
        charge_box_id=charge_box_id,
        connector_id=connector_id,
        tx=tx,
        transaction_id=transaction_id,
        samples=samples,
        progress_gate=progress_gate,
        limits=limits,
        known=known,
        sink=sink,
    )
    return events, known


class ProgressThrottle:
    """At most one progress event per transaction per interval (boundaries always pass)."""

    def __init__(self, interval_s: float, clock: Callable[[], float]) -> None:
        self._interval = interval_s
        self._clock = clock
        self._last: dict[int, float] = {}

    def __call__(self, transaction_id: int, boundary: bool) -> bool:
        now = self._clock()
        last = self._last.get(transaction_id)
        if boundary or last is None or now - last >= self._interval:
            self._last[transaction_id] = now
            if len(self._last) > 10_000:
                self._last.clear()
            return True
        return False
