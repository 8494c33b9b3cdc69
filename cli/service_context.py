"""The CLI's service context: one engine for the command, Temporal connected on first use."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from temporalio.client import Client

from config.settings import Settings
from config.temporal import connect
from db.engine import make_engine, make_session_factory
from services.context import ServiceContext


@asynccontextmanager
async def open_service_context(settings: Settings) -> AsyncIterator[ServiceContext]:
    engine = make_engine(settings.require_database_url(), pool_size=2)
    client: Client | None = None
    lock = asyncio.Lock()

    async def temporal() -> Client:
        nonlocal client
        async with lock:
            if client is None:
                client = await connect(settings)
            return client

    try:
        yield ServiceContext(
            settings=settings, sessions=make_session_factory(engine), temporal=temporal
        )
    finally:
        await engine.dispose()
