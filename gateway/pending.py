"""Unknown chargers the gateway refused, kept for ``polaris chargers pending``.

Anyone can open a handshake with a made-up chargeBoxId, so what this costs stays bounded:

- per process, an id is written at most once per ``gateway_pending_charger_interval_s`` (a
  least-recently-used memory of ids, itself bounded), so a charger retrying every second costs
  one write a minute;
- in PostgreSQL, a new id is inserted only while the table holds fewer than
  ``gateway_pending_chargers_max`` rows (ids already listed keep being updated). Concurrent
  handshakes can overshoot the cap by at most the number of handshakes checked at once.

Recording never fails a handshake: the refusal is answered whatever PostgreSQL says.
"""

from __future__ import annotations

import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import DateTime, Integer, String, func, literal, select, update
from sqlalchemy.dialects.postgresql import insert

from db.engine import SessionFactory
from db.models import PendingCharger

log = logging.getLogger(__name__)

# Ids remembered per process for the write interval.
MAX_REMEMBERED = 10_000
ADDRESS_MAX = 64
# The ids `polaris chargers add` accepts (printable ASCII, no "/"): anything else (control
# characters would reach an operator's terminal) is refused without being recorded.
PRINTABLE_ID = re.compile(r"[!-.0-~]{1,255}")


class PendingRecorder:
    def __init__(
        self,
        sf: SessionFactory,
        *,
        max_rows: int,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sf = sf
        self._max_rows = max_rows
        self._interval_s = interval_s
        self._clock = clock
        # id → (monotonic time of its last write, attempts since then not written)
        self._written: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def due(self, charge_box_id: str) -> int:
        """How many attempts to write now (this one and those skipped since the last write of
        this id); 0 while the id was written less than an interval ago."""
        now = self._clock()
        last, skipped = self._written.get(charge_box_id, (None, 0))
        if last is not None and now - last < self._interval_s:
            self._written[charge_box_id] = (last, skipped + 1)
            return 0
        self._written[charge_box_id] = (now, 0)
        self._written.move_to_end(charge_box_id)
        while len(self._written) > MAX_REMEMBERED:
            self._written.popitem(last=False)
        return skipped + 1

    async def record(self, charge_box_id: str, address: str | None, now: datetime) -> bool:
        """Insert or update the id's row; False when skipped (too soon, the table is full, or an
        id no charger could be registered under: it would only be printed to an operator)."""
        if not PRINTABLE_ID.fullmatch(charge_box_id):
            return False
        attempts = self.due(charge_box_id)
        if not attempts:
            return False
        address = address[:ADDRESS_MAX] if address else None
        room = select(func.count()).select_from(PendingCharger).scalar_subquery() < self._max_rows
        async with self._sf.begin() as s:
            updated = await s.scalar(
                update(PendingCharger)
                .where(PendingCharger.charge_box_id == charge_box_id)
                .values(
                    last_seen_at=now,
                    attempts=PendingCharger.attempts + attempts,
                    last_address=address,
                )
                .returning(PendingCharger.charge_box_id)
            )
            if updated is not None:
                return True
            source = select(
                literal(charge_box_id, String()),
                literal(now, DateTime(timezone=True)),
                literal(now, DateTime(timezone=True)),
                literal(attempts, Integer()),
                literal(address, String()),
            ).where(room)
            inserted = await s.scalar(
                insert(PendingCharger)
                .from_select(
                    ["charge_box_id", "first_seen_at", "last_seen_at", "attempts", "last_address"],
                    source,
                )
                .on_conflict_do_nothing()
                .returning(PendingCharger.charge_box_id)
            )
        if inserted is None:
            log.warning(
                "pending chargers: %s not recorded (the list holds %d ids already, or it was "
                "just added)",
                charge_box_id,
                self._max_rows,
            )
            return False
        return True


__all__ = ["PendingRecorder"]
