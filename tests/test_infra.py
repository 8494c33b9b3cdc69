"""The harness itself: real PostgreSQL migrated, real Temporal answering."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from db.migrate import current_head


async def test_database_is_migrated_to_head(db_session: AsyncSession) -> None:
    version = (
        await db_session.execute(text("SELECT version_num FROM alembic_version"))
    ).scalar_one()
    assert version == current_head()


async def test_rollback_isolation_first(db_session: AsyncSession) -> None:
    await db_session.execute(text("INSERT INTO sites (name) VALUES ('rollback-probe')"))
    await db_session.commit()


async def test_rollback_isolation_second(db_session: AsyncSession) -> None:
    count = (
        await db_session.execute(text("SELECT count(*) FROM sites WHERE name='rollback-probe'"))
    ).scalar_one()
    assert count == 0


async def test_temporal_dev_server_answers(temporal_client: Client) -> None:
    # Listing with an impossible query still round-trips through the real server.
    found = [wf async for wf in temporal_client.list_workflows("WorkflowId = 'nope'")]
    assert found == []
