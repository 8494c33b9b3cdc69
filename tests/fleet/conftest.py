"""Fleet tests: the service layer over the real PostgreSQL, a real gateway and real ``ocpp``
charge points (the gateway fixtures are the gateway tests' own)."""

from __future__ import annotations

import pytest
from temporalio.client import Client

from config.settings import Settings
from db.engine import SessionFactory
from services.actor import Actor
from services.context import ServiceContext
from tests.gateway.conftest import (  # noqa: F401  (fixtures re-exported for this folder)
    gateway,
    gw_settings,
    session_worker,
)


@pytest.fixture
def ctx(
    gw_settings: Settings,  # noqa: F811
    session_factory: SessionFactory,
    temporal_client: Client,
) -> ServiceContext:
    async def temporal() -> Client:
        return temporal_client

    return ServiceContext(settings=gw_settings, sessions=session_factory, temporal=temporal)


@pytest.fixture
def operator() -> Actor:
    return Actor(id="user:test-operator", role="admin", source="203.0.113.5")
