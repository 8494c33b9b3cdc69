"""MeterValues group commit: many chargers share a transaction, and a bad message fails alone."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError

from db.engine import SessionFactory
from db.models import MeterSample
from gateway.group_commit import MeterValuesBatcher
from gateway.meter import Sample


def _sample(phase: str | None = None) -> Sample:
    return Sample(
        sampled_at=datetime.now(UTC),
        measurand="Voltage",
        raw_value="230.1",
        energy_wh=None,
        unit="V",
        phase=phase,
        context="Sample.Periodic",
        location=None,
    )


async def _count(factory: SessionFactory, prefix: str) -> int:
    async with factory() as db:
        return (
            await db.execute(
                select(func.count())
                .select_from(MeterSample)
                .where(MeterSample.charge_box_id.like(f"{prefix}%"))
            )
        ).scalar_one()


async def test_concurrent_messages_are_all_committed_before_they_are_answered(
    session_factory: SessionFactory,
) -> None:
    prefix = f"GC-{uuid.uuid4().hex[:6]}-"
    batcher = MeterValuesBatcher(session_factory, lambda _tx, _boundary: False, max_batch=7)
    results = await asyncio.gather(
        *(
            batcher.record(
                charge_box_id=f"{prefix}{i}",
                connector_id=1,
                transaction_id=None,
                samples=[_sample(), _sample()],
            )
            for i in range(50)
        )
    )
    assert results == [0] * 50
    # Every awaited record() was committed when it returned.
    assert await _count(session_factory, prefix) == 100
    await batcher.close()


async def test_a_bad_message_fails_alone(session_factory: SessionFactory) -> None:
    prefix = f"GB-{uuid.uuid4().hex[:6]}-"
    batcher = MeterValuesBatcher(session_factory, lambda _tx, _boundary: False)

    async def good(i: int) -> int:
        return await batcher.record(
            charge_box_id=f"{prefix}{i}", connector_id=1, transaction_id=None, samples=[_sample()]
        )

    # A phase longer than the column allows: PostgreSQL refuses this one message.
    bad = batcher.record(
        charge_box_id=f"{prefix}bad",
        connector_id=1,
        transaction_id=None,
        samples=[_sample(phase="L1-N-and-much-more")],
    )
    outcomes = await asyncio.gather(*(good(i) for i in range(10)), bad, return_exceptions=True)
    assert outcomes[:10] == [0] * 10
    assert isinstance(outcomes[10], DBAPIError)
    assert await _count(session_factory, prefix) == 10
    await batcher.close()


@pytest.mark.parametrize("max_batch", [1, 200])
async def test_batch_size_does_not_change_what_is_stored(
    session_factory: SessionFactory, max_batch: int
) -> None:
    prefix = f"GS-{uuid.uuid4().hex[:6]}-"
    batcher = MeterValuesBatcher(session_factory, lambda _tx, _boundary: False, max_batch=max_batch)
    await asyncio.gather(
        *(
            batcher.record(
                charge_box_id=f"{prefix}{i}",
                connector_id=0,
                transaction_id=None,
                samples=[_sample()],
            )
            for i in range(5)
        )
    )
    assert await _count(session_factory, prefix) == 5
    await batcher.close()


async def test_a_message_nobody_waits_for_any_more_is_not_written(
    session_factory: SessionFactory,
) -> None:
    """Its charger was answered InternalError (the journal guard's timeout) and resends it:
    writing the abandoned copy too would only add work when the database is already slow."""
    prefix = f"GC-{uuid.uuid4().hex[:6]}-"
    batcher = MeterValuesBatcher(session_factory, lambda _tx, _boundary: False)

    def record(i: int) -> asyncio.Task[int]:
        return asyncio.create_task(
            batcher.record(
                charge_box_id=f"{prefix}{i}",
                connector_id=1,
                transaction_id=None,
                samples=[_sample()],
            )
        )

    kept, abandoned = record(0), record(1)
    await asyncio.sleep(0)  # both are queued; the batch has not formed yet
    abandoned.cancel()
    assert await kept == 0
    with pytest.raises(asyncio.CancelledError):
        await abandoned
    await batcher.close()
    assert await _count(session_factory, prefix) == 1
