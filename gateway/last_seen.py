"""``chargers.last_seen_at`` for every connected charger: one statement per interval for all.

Every message a charger sends proves it alive. Writing that per charger cost one transaction per
charger every few seconds: 10,000 chargers heartbeating every 30 s were 333 transactions a second
for a timestamp the watchdog reads with a resolution of minutes. Instead each connection records
the time it was last heard in memory (a dict assignment per frame) and :class:`LastSeenWriter`
writes all of them every ``interval_s`` in one ``UPDATE … FROM unnest(…)``.

- A row another transaction is writing right now (a boot, a status) is skipped (``SKIP LOCKED``)
  and kept for the next round, so the writer never waits behind a charger's own messages.
- A round that fails (PostgreSQL down) keeps its entries for the next one; a newer time heard
  meanwhile wins.
- The same statement returns which chargers were decommissioned while connected: their
  connections are closed (the handshake would refuse them now).
- ``last_seen_at`` never goes backwards (``GREATEST``): the connection and boot records write it
  too.

Readers (the session watchdog's liveness check, the offline alerts, the idle fee) look minutes
back; a delay of one interval is nothing to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any

from sqlalchemy import text

from db.engine import SessionFactory

log = logging.getLogger(__name__)

# The longest a charger's last message waits before last_seen_at shows it.
INTERVAL_S = 5.0

_WRITE = text(
    """
    WITH heard AS (
        SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:ats AS timestamptz[])) AS h(id, at)
    ), free AS (
        SELECT c.charge_box_id FROM chargers c JOIN heard ON c.charge_box_id = heard.id
        ORDER BY c.charge_box_id
        FOR UPDATE OF c SKIP LOCKED
    )
    UPDATE chargers c SET last_seen_at = GREATEST(c.last_seen_at, heard.at)
    FROM heard JOIN free ON free.charge_box_id = heard.id
    WHERE c.charge_box_id = heard.id
    RETURNING c.charge_box_id, c.decommissioned_at IS NOT NULL AS decommissioned
    """
)

Close = Callable[[], Coroutine[Any, Any, None]]


class LastSeenWriter:
    def __init__(self, sf: SessionFactory, *, interval_s: float = INTERVAL_S) -> None:
        self._sf = sf
        self._interval_s = interval_s
        # charge_box_id -> (last heard, how to close that charger's connection)
        self._heard: dict[str, tuple[datetime, Close]] = {}
        self._task: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()

    def heard(self, charge_box_id: str, at: datetime, close: Close) -> None:
        """The charger spoke at ``at`` (called for every frame: no I/O here)."""
        self._heard[charge_box_id] = (at, close)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="last-seen-writer")

    async def stop(self) -> None:
        """Stop the rounds and write what was heard since the last one."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        with contextlib.suppress(Exception):
            await self.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.flush()
            except Exception as exc:  # PostgreSQL down: the entries wait for the next round
                log.warning("last_seen_at not written this round: %r", exc)

    async def flush(self) -> None:
        """One round: write every time heard since the last round."""
        batch, self._heard = self._heard, {}
        if not batch:
            return
        ids = sorted(batch)
        try:
            async with self._sf.begin() as s:
                rows = (
                    await s.execute(_WRITE, {"ids": ids, "ats": [batch[i][0] for i in ids]})
                ).all()
        except BaseException:
            self._keep(batch, ids)
            raise
        written = {row.charge_box_id for row in rows}
        # Skipped (its row was being written) or not there: try again next round.
        self._keep(batch, [i for i in ids if i not in written])
        for row in rows:
            if row.decommissioned:
                # Decommissioned while connected: the handshake would refuse it now, so does this.
                log.warning("%s is decommissioned: closing its connection", row.charge_box_id)
                self._heard.pop(row.charge_box_id, None)
                close = batch[row.charge_box_id][1]
                task: asyncio.Task[None] = asyncio.create_task(
                    close(), name=f"close-{row.charge_box_id}"
                )
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)

    def _keep(self, batch: dict[str, tuple[datetime, Close]], ids: list[str]) -> None:
        """Put entries back for the next round, unless the charger was heard again meanwhile."""
        for charge_box_id in ids:
            self._heard.setdefault(charge_box_id, batch[charge_box_id])
