"""last_seen_at for all connected chargers in one statement per round (gateway/last_seen.py),
against a real PostgreSQL: every charger heard is written, a row being written by someone else
is skipped and written next round, the time never goes backwards, and a charger decommissioned
while connected has its connection closed."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, text, update

from db.engine import SessionFactory
from db.models import Charger
from gateway.last_seen import LastSeenWriter
from tests.gateway.conftest import seed_charger


async def _seen(sf: SessionFactory, charge_box_id: str) -> datetime | None:
    async with sf() as s:
        return await s.scalar(
            select(Charger.last_seen_at).where(Charger.charge_box_id == charge_box_id)
        )


async def _nothing() -> None:
    return None


async def test_one_round_writes_every_charger_heard(session_factory: SessionFactory) -> None:
    writer = LastSeenWriter(session_factory)
    chargers = [await seed_charger(session_factory) for _ in range(5)]
    at = datetime.now(UTC).replace(microsecond=0)
    for i, cb in enumerate(chargers):
        writer.heard(cb, at - timedelta(seconds=i), _nothing)
    writer.heard(chargers[0], at + timedelta(seconds=3), _nothing)  # heard again: newest wins
    await writer.flush()
    assert await _seen(session_factory, chargers[0]) == at + timedelta(seconds=3)
    for i, cb in enumerate(chargers[1:], start=1):
        assert await _seen(session_factory, cb) == at - timedelta(seconds=i)
    await writer.flush()  # nothing heard since: nothing to do


async def test_last_seen_never_goes_backwards(session_factory: SessionFactory) -> None:
    writer = LastSeenWriter(session_factory)
    cb = await seed_charger(session_factory)
    later = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=1)
    async with session_factory.begin() as s:
        # The connection record wrote a later time meanwhile.
        await s.execute(
            update(Charger).where(Charger.charge_box_id == cb).values(last_seen_at=later)
        )
    writer.heard(cb, later - timedelta(seconds=30), _nothing)
    await writer.flush()
    assert await _seen(session_factory, cb) == later


async def test_a_row_being_written_waits_for_the_next_round(
    session_factory: SessionFactory,
) -> None:
    writer = LastSeenWriter(session_factory)
    busy, free = await seed_charger(session_factory), await seed_charger(session_factory)
    at = datetime.now(UTC).replace(microsecond=0)
    writer.heard(busy, at, _nothing)
    writer.heard(free, at, _nothing)
    async with session_factory.begin() as other:
        # A boot of ``busy`` holds its row: the round must neither wait for it nor lose it.
        await other.execute(
            text("SELECT 1 FROM chargers WHERE charge_box_id = :cb FOR UPDATE"), {"cb": busy}
        )
        await writer.flush()
        assert await _seen(session_factory, free) == at
    assert await _seen(session_factory, busy) is None
    await writer.flush()
    assert await _seen(session_factory, busy) == at


async def test_a_decommissioned_charger_is_closed(session_factory: SessionFactory) -> None:
    writer = LastSeenWriter(session_factory)
    cb = await seed_charger(session_factory)
    async with session_factory.begin() as s:
        await s.execute(
            update(Charger)
            .where(Charger.charge_box_id == cb)
            .values(decommissioned_at=datetime.now(UTC))
        )
    closed: list[str] = []

    async def close() -> None:
        closed.append(cb)

    writer.heard(cb, datetime.now(UTC), close)
    await writer.flush()
    for _ in range(100):  # the close runs as its own task
        if closed:
            break
        await asyncio.sleep(0.01)
    assert closed == [cb]
