"""The real API app over ASGI with chosen settings and a chosen socket peer.

Like the ``api`` fixture in ``conftest.py`` (every router, the real authorization layer, the real
database, Temporal and auth service), for tests that need other settings (trusted proxies, the
admin check cache) or another peer address.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from api.app import create_app
from api.auth_jwt import JwtVerifier
from api.deps import AppState
from config.settings import Settings
from db.engine import SessionFactory
from tests.helpers import reset_rate_limits


@dataclass
class RealApi:
    client: httpx.AsyncClient
    app: FastAPI

    @property
    def state(self) -> AppState:
        state: AppState = self.app.state.polaris
        return state


@asynccontextmanager
async def real_api(
    settings: Settings,
    engine: AsyncEngine,
    session_factory: SessionFactory,
    temporal_client: Client | None,
    *,
    peer: str = "203.0.113.7",
) -> AsyncIterator[RealApi]:
    await reset_rate_limits(session_factory)
    app = create_app(settings)
    async with httpx.AsyncClient(timeout=30.0) as http:
        state = AppState(
            settings=settings,
            engine=engine,
            sessions=session_factory,
            http=http,
            verifier=JwtVerifier.for_auth_service(settings.auth_base_url, http_client=http),
        )
        state._temporal = temporal_client  # None: connect lazily, as the app does
        app.state.polaris = state
        transport = httpx.ASGITransport(app=app, client=(peer, 50000))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                yield RealApi(client, app)
        finally:
            # The lifespan does this in a served app: the live streams' listener (docs/live.md).
            if state.live_hub is not None:
                await state.live_hub.stop()
