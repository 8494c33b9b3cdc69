"""A Temporal client that may not exist yet: the gateway serves chargers while Temporal is down.

The link connects in the background with capped exponential backoff. Callers on a charger's
critical path read :attr:`client` (None while disconnected) and fall back; background tasks
``await wait()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from temporalio.client import Client

from config.settings import Settings
from config.temporal import connect

log = logging.getLogger(__name__)


class TemporalLink:
    def __init__(
        self,
        settings: Settings,
        *,
        connector: Callable[[Settings], Awaitable[Client]] = connect,
        max_backoff_s: float = 10.0,
    ) -> None:
        self._settings = settings
        self._connector = connector
        self._max_backoff = max_backoff_s
        self._client: Client | None = None
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def client(self) -> Client | None:
        return self._client

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._connect_loop(), name="temporal-link")

    async def wait(self) -> Client:
        await self._ready.wait()
        assert self._client is not None
        return self._client

    async def _connect_loop(self) -> None:
        delay = 0.2
        while True:
            try:
                self._client = await asyncio.wait_for(self._connector(self._settings), 10)
            except Exception as exc:
                log.warning("Temporal not reachable (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_backoff)
                continue
            log.info("connected to Temporal at %s", self._settings.temporal_address)
            self._ready.set()
            return

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
