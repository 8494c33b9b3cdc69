"""What a charger connection remembers of its open transactions: the MeterValues fast path.

A charger's socket lives on one gateway, and a connection's messages are handled one at a time,
so the connection itself is the natural owner of "the last good billing register of each of my
open transactions". With it, a MeterValues message whose samples are newer than that register is
checked for monotonicity without asking PostgreSQL: no per-message read of the transaction, no
per-sample neighbour query. What the connection remembers is:

- loaded from PostgreSQL in one statement the first time the connection sees the transaction
  (the transaction row, the charger's maximum power, the highest good register and the time of
  the latest good sample), and again after :data:`TTL_S` (an operator's change to the charger's
  maximum power is seen within that time);
- advanced only after the batch holding the samples has committed (a rolled-back batch leaves it
  as it was);
- forgotten when the transaction stops, and with the connection (a charger that reconnects, to
  this gateway or another, starts from PostgreSQL again).

A sample older than the latest good one (a charger replaying a queue out of order) still goes
through the neighbour query: its neighbours after it are only known to PostgreSQL.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Charger, MeterSample, Transaction
from gateway.meter import BILLING_REGISTER

# How long a connection trusts what it loaded before it reads the transaction again.
TTL_S = 60.0
# A connection with more open transactions than this is not a charger: forget the oldest.
MAX_ENTRIES = 64


@dataclass(slots=True)
class TransactionView:
    """The columns of a transaction the metering rules read (an ORM row offers the same)."""

    id: int
    charge_box_id: str
    connector_id: int
    id_tag: str
    workflow_id: str
    started_at: datetime
    meter_start_wh: int
    stopped_at: datetime | None
    meter_stop_wh: int | None


@dataclass(slots=True)
class OpenTransaction:
    """An open transaction as its connection knows it."""

    tx: TransactionView
    max_power_w: int | None
    # Highest good billing register stored (meter start when none) and the latest good
    # sample's time (None when none is stored).
    good_wh: int
    good_at: datetime | None
    loaded_at: float

    def advance(self, at: datetime, wh: int) -> None:
        """A good sample was stored (in the batch being built)."""
        self.good_wh = max(self.good_wh, wh)
        if self.good_at is None or at > self.good_at:
            self.good_at = at

    def copy(self) -> OpenTransaction:
        return OpenTransaction(
            self.tx, self.max_power_w, self.good_wh, self.good_at, self.loaded_at
        )


_GOOD = (
    MeterSample.measurand == BILLING_REGISTER,
    MeterSample.phase.is_(None),
    MeterSample.flag.is_(None),
    MeterSample.energy_wh.is_not(None),
)
# One round trip: the transaction, its charger's maximum power, its highest good register and
# the time of its latest good sample. Built once (statement construction is not free).
_LOAD = select(
    Transaction.id,
    Transaction.charge_box_id,
    Transaction.connector_id,
    Transaction.id_tag,
    Transaction.workflow_id,
    Transaction.started_at,
    Transaction.meter_start_wh,
    Transaction.stopped_at,
    Transaction.meter_stop_wh,
    select(Charger.max_power_w)
    .where(Charger.charge_box_id == Transaction.charge_box_id)
    .scalar_subquery(),
    select(func.max(MeterSample.energy_wh))
    .where(MeterSample.transaction_id == Transaction.id, *_GOOD)
    .scalar_subquery(),
    select(func.max(MeterSample.sampled_at))
    .where(MeterSample.transaction_id == Transaction.id, *_GOOD)
    .scalar_subquery(),
).where(Transaction.id == bindparam("tx"), Transaction.charge_box_id == bindparam("cb"))


async def load(
    s: AsyncSession, charge_box_id: str, transaction_id: int, now: float
) -> tuple[TransactionView | None, OpenTransaction | None]:
    """The transaction (None when unknown) and, when it is open, what to remember of it."""
    row = (await s.execute(_LOAD, {"tx": transaction_id, "cb": charge_box_id})).first()
    if row is None:
        return None, None
    tx = TransactionView(*row[:9])
    if tx.stopped_at is not None:
        return tx, None
    max_power_w, good_wh, good_at = row[9:]
    good = tx.meter_start_wh if good_wh is None else max(tx.meter_start_wh, good_wh)
    return tx, OpenTransaction(tx, max_power_w, good, good_at, now)


class OpenTransactions:
    """One connection's open transactions, by id."""

    def __init__(self, ttl_s: float = TTL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl_s
        self.clock = clock
        self._entries: dict[int, OpenTransaction] = {}

    def get(self, transaction_id: int) -> OpenTransaction | None:
        """A copy to work on (None when not known or too old to trust)."""
        entry = self._entries.get(transaction_id)
        if entry is None or self.clock() - entry.loaded_at > self._ttl:
            return None
        return entry.copy()

    def put(self, entry: OpenTransaction) -> None:
        """Remember ``entry`` (call only once what it describes is committed)."""
        self._entries.pop(entry.tx.id, None)
        self._entries[entry.tx.id] = entry
        while len(self._entries) > MAX_ENTRIES:
            del self._entries[next(iter(self._entries))]

    def forget(self, transaction_id: int) -> None:
        self._entries.pop(transaction_id, None)
