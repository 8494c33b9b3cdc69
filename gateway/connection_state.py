"""``chargers.connected``: the connections and disconnections of many chargers in one transaction.

A connection used to cost its own transaction (the charger row, the ``charger.connected`` event,
the local-list and site-load triggers), and so did every disconnection, serialised per charger by
a striped lock so that a closing socket's "disconnected" never landed after the "connected" of
the socket that replaced it. In a reconnect storm (2,000 chargers dropping and coming back
within seconds) those 4,000 small transactions queued behind each other and behind the lock
stripes, and the chargers' BootNotifications waited for them.

:class:`ConnectionStateWriter` is a group commit for them instead:

- Every connection and disconnection is queued, in the order the gateway saw them, and the
  caller waits for its own write, as before (a charger's messages are served only once its
  connection is recorded).
- One writer task takes everything queued, keeps each charger's last state (in queue order, so a
  late "disconnected" can never overtake the "connected" queued after it: the order that the
  stripes used to enforce is now the queue's) and writes the batch in one transaction with one
  statement per kind: the rows, the events (one ``charger.connected`` per connection), the
  local-list and the site-load outbox rows.
- While one batch commits, the next queues: idle, a write costs one transaction as before; under
  a storm, one transaction serves hundreds of chargers.
- A batch that fails (PostgreSQL down) fails its callers, who log it as before: the row is soft
  state, rewritten by the charger's next connection, and ``last_seen_at`` keeps the watchdog right.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from db.engine import SessionFactory
from gateway import journal

log = logging.getLogger(__name__)

MAX_BATCH = 500


@dataclass
class _Change:
    charge_box_id: str
    # The connection, or None for a disconnection.
    connection: journal.Connected | None
    done: asyncio.Future[None] = field(repr=False, default_factory=asyncio.Future)


class ConnectionStateWriter:
    def __init__(
        self,
        sf: SessionFactory,
        instance: str,
        wake_relay: Callable[[], None],
        *,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._sf = sf
        self._instance = instance
        self._wake_relay = wake_relay
        self._max_batch = max_batch
        self._queue: list[_Change] = []
        self._task: asyncio.Task[None] | None = None

    async def connected(self, charge_box_id: str, at: datetime, *, ocpp_version: str) -> None:
        """Record the connection (and the OCPP version it negotiated); returns once committed."""
        await self._write(
            _Change(charge_box_id, journal.Connected(charge_box_id, at, ocpp_version))
        )

    async def disconnected(self, charge_box_id: str) -> None:
        """Record the disconnection, unless a connection queued after it (or another gateway)
        has the charger by the time it is written; returns once committed."""
        await self._write(_Change(charge_box_id, None))

    async def _write(self, change: _Change) -> None:
        self._queue.append(change)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name="connection-state-writer")
        await change.done

    async def _drain(self) -> None:
        while self._queue:
            batch = self._queue[: self._max_batch]
            del self._queue[: len(batch)]
            try:
                queued = await self._commit(batch)
            except Exception as exc:
                for change in batch:
                    if not change.done.done():
                        change.done.set_exception(exc)
                continue
            if queued:
                self._wake_relay()
            for change in batch:
                if not change.done.done():
                    change.done.set_result(None)

    async def _commit(self, batch: list[_Change]) -> bool:
        # Each charger's last change wins; every connection still gets its event.
        last: dict[str, _Change] = {}
        for change in batch:
            last[change.charge_box_id] = change
        return await journal.write_connection_states(
            self._sf,
            self._instance,
            connected=[c.connection for c in last.values() if c.connection is not None],
            disconnected=[c.charge_box_id for c in last.values() if c.connection is None],
            events=[c.connection for c in batch if c.connection is not None],
        )

    async def close(self) -> None:
        """Wait for what is queued (a stopping gateway records its last disconnections)."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
