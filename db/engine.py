"""Engine and session factory. Built by entry points from settings; nothing global."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from config.settings import sqlalchemy_url

SessionFactory = async_sessionmaker[AsyncSession]


def make_engine(database_url: str, *, pool_size: int = 10, pre_ping: bool = True) -> AsyncEngine:
    """``pre_ping``: test each connection with a round trip when it is taken from the pool, so a
    PostgreSQL restart costs nothing but a reconnect. Without it, the first statement on a dead
    connection fails (and the whole pool is recycled at once): for the gateway's journal that is
    an InternalError the charger answers by resending, and one round trip less per message."""
    return create_async_engine(
        sqlalchemy_url(database_url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=pre_ping,
        pool_recycle=1800,
        # Bound values (idTags, e-mail addresses) stay out of exception text, hence out of logs.
        hide_parameters=True,
    )


def make_session_factory(engine: AsyncEngine) -> SessionFactory:
    return async_sessionmaker(engine, expire_on_commit=False)


@contextlib.asynccontextmanager
async def autocommit(sf: SessionFactory) -> AsyncIterator[AsyncConnection]:
    """A connection of ``sf``'s engine in autocommit mode, for work that is one statement: it is
    its own transaction, so it costs one round trip instead of three (BEGIN, the statement,
    COMMIT). Never for two writes that must land together."""
    engine: AsyncEngine = sf.kw["bind"]
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        yield conn
