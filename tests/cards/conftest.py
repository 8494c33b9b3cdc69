"""Card tests: the card service and ``polaris cards`` over the real PostgreSQL, a real worker
(the card-link saga), the real auth service and a Lago sandbox (the identity tests' fixtures)."""

from __future__ import annotations

import pytest
from temporalio.client import Client

from config.settings import Settings
from db.engine import SessionFactory
from services.actor import Actor
from services.context import ServiceContext
from tests.identity.conftest import (  # noqa: F401  (fixtures re-exported for this folder)
    identity_settings,
    lago_sandbox,
    worker,
)


@pytest.fixture
def ctx(
    identity_settings: Settings,  # noqa: F811
    session_factory: SessionFactory,
    temporal_client: Client,
) -> ServiceContext:
    async def temporal() -> Client:
        return temporal_client

    return ServiceContext(settings=identity_settings, sessions=session_factory, temporal=temporal)


@pytest.fixture
def operator() -> Actor:
    return Actor(id="user:test-operator", role="admin", source="203.0.113.5")
