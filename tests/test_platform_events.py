"""Platform events: recorded in the caller's transaction, announced on commit only."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import select

from config.settings import libpq_url
from db.engine import SessionFactory
from db.events import EVENTS_CHANNEL, record_event
from db.models import PlatformEvent
from domain.events import SESSION_STARTED


async def test_an_event_is_announced_when_its_transaction_commits_and_never_on_rollback(
    pg_url: str, session_factory: SessionFactory
) -> None:
    listener = await psycopg.AsyncConnection.connect(libpq_url(pg_url), autocommit=True)
    try:
        await listener.execute(f"LISTEN {EVENTS_CHANNEL}")

        class Rollback(Exception):
            pass

        with pytest.raises(Rollback):
            async with session_factory.begin() as db:
                await record_event(db, SESSION_STARTED, {"n": 1}, user_id="u-rolled-back")
                raise Rollback
        async with session_factory.begin() as db:
            kept = await record_event(
                db, SESSION_STARTED, {"n": 2}, subject="wf-1", charge_box_id="CB-1"
            )
        # Notifications arrive in commit order: had the rolled-back transaction announced
        # anything, it would come first.
        heard = [n.payload async for n in listener.notifies(timeout=30.0, stop_after=1)]
        assert heard == [str(kept)]
        async with session_factory() as db:
            row = await db.scalar(select(PlatformEvent).where(PlatformEvent.id == kept))
            ghost = await db.scalar(
                select(PlatformEvent).where(PlatformEvent.user_id == "u-rolled-back")
            )
        assert row is not None and row.payload == {"n": 2} and row.charge_box_id == "CB-1"
        assert ghost is None
        with pytest.raises(ValueError, match="unknown event type"):
            async with session_factory.begin() as db:
                await record_event(db, "session.exploded", {})
    finally:
        await listener.close()
