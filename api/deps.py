"""Application state and the ``Annotated`` dependency aliases routes use."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Annotated

import httpx
from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from temporalio.client import Client

from api.auth_jwt import JwtVerifier
from api.live_hub import EventHub
from api.live_sessions import LiveSessionCache
from config.settings import Settings
from config.temporal import connect
from db.engine import SessionFactory


@dataclass
class AppState:
    settings: Settings
    engine: AsyncEngine
    sessions: SessionFactory
    http: httpx.AsyncClient
    # Verifies the auth service's JWTs offline (keys cached); see api/authz.py.
    verifier: JwtVerifier | None = None
    # Recent live session checks for admin reads (api/authz.py); made on first use.
    live_sessions: LiveSessionCache | None = None
    # The process's live event listener (api/live_hub.py); started by the first stream.
    live_hub: EventHub | None = None
    _temporal: Client | None = None
    _temporal_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _live_hub_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def temporal(self) -> Client:
        """Connect lazily, so the API starts (and reports 'degraded') while Temporal is down."""
        async with self._temporal_lock:
            if self._temporal is None:
                self._temporal = await connect(self.settings)
            return self._temporal


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.polaris
    return state


async def get_db(state: Annotated[AppState, Depends(get_state)]) -> AsyncSession:
    return state.sessions()


State = Annotated[AppState, Depends(get_state)]
