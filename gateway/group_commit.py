"""Group commit for MeterValues: messages from many chargers share one PostgreSQL transaction.

MeterValues is the bulk of what chargers send. Each charger is still answered only after its
samples are committed (nothing is acknowledged that a crash could lose), but while one batch
commits the next messages queue up and go into the next transaction together, so under load one
BEGIN/COMMIT serves many chargers. A batch that fails is retried one message per transaction, so
one bad message only fails its own charger (which then gets InternalError and resends).

A message whose charger stopped waiting before its batch formed (the journal guard's timeout
answered it InternalError, or its connection closed) is not written: the charger resends it, and
writing the abandoned copy as well only added work to a database that was already too slow.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from db.engine import SessionFactory
from domain.energy import MeterLimits
from gateway.meter import Sample
from gateway.metering import flush, record_in
from gateway.open_transactions import OpenTransaction, OpenTransactions

log = logging.getLogger(__name__)

MAX_BATCH = 200


@dataclass
class _Request:
    charge_box_id: str
    connector_id: int
    transaction_id: int | None
    samples: list[Sample]
    remembered: OpenTransactions | None
    done: asyncio.Future[int] = field(repr=False, default_factory=asyncio.Future)


class MeterValuesBatcher:
    def __init__(
        self,
        sf: SessionFactory,
        progress_gate: Callable[[int, bool], bool],
        *,
        max_batch: int = MAX_BATCH,
        limits: MeterLimits | None = None,
    ) -> None:
        self._sf = sf
        self._limits = limits or MeterLimits()
        self._gate = progress_gate
        self._max_batch = max_batch
        self._queue: list[_Request] = []
        self._task: asyncio.Task[None] | None = None

    async def record(
        self,
        *,
        charge_box_id: str,
        connector_id: int,
        transaction_id: int | None,
        samples: list[Sample],
        remembered: OpenTransactions | None = None,
    ) -> int:
        """Journal one message; returns its number of outbox events once it is committed.

        ``remembered``: the connection's open transactions (the fast path of the monotonicity
        check); updated only once the message is committed."""
        request = _Request(charge_box_id, connector_id, transaction_id, samples, remembered)
        self._queue.append(request)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name="meter-values-group-commit")
        return await request.done

    async def _drain(self) -> None:
        while self._queue:
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            # Awaiting a future cancels it with its waiter: nobody waits for these any more.
            batch = [request for request in batch if not request.done.cancelled()]
            if not batch:
                continue
            try:
                results = await self._commit(batch)
            except Exception as exc:
                log.warning(
                    "MeterValues batch of %d failed, retrying one by one: %r", len(batch), exc
                )
                for request in batch:
                    await self._commit_one(request)
                continue
            for request, events in zip(batch, results, strict=True):
                if not request.done.done():
                    request.done.set_result(events)

    async def _commit(self, batch: list[_Request]) -> list[int]:
        sink: list[dict[str, object]] = []
        async with self._sf.begin() as s:
            outcomes = [await self._record(s, request, sink) for request in batch]
            await flush(s, sink)  # every sample of the batch in one statement
        # Committed: the connections may now remember the registers.
        for request, (_, known) in zip(batch, outcomes, strict=True):
            if known is not None and request.remembered is not None:
                request.remembered.put(known)
        return [events for events, _ in outcomes]

    async def _commit_one(self, request: _Request) -> None:
        try:
            events = (await self._commit([request]))[0]
        except Exception as exc:
            if not request.done.done():
                request.done.set_exception(exc)
            return
        if not request.done.done():
            request.done.set_result(events)

    async def _record(
        self, s: AsyncSession, request: _Request, sink: list[dict[str, object]]
    ) -> tuple[int, OpenTransaction | None]:
        return await record_in(
            s,
            charge_box_id=request.charge_box_id,
            connector_id=request.connector_id,
            transaction_id=request.transaction_id,
            samples=request.samples,
            progress_gate=self._gate,
            limits=self._limits,
            remembered=request.remembered,
            sink=sink,
        )

    async def close(self) -> None:
        """Finish what is queued (chargers waiting on it get their answers)."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
