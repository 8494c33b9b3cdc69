"""Inbox, rate-limit and authorization-matrix tests: the real API app (every router, the real
authorization layer) over ASGI, the real auth service, the real database and Temporal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import delete
from temporalio.client import Client

from config.settings import Settings
from db.engine import SessionFactory
from db.ratelimits import ApiRateLimit
from tests.fixtures.auth import AuthService
from tests.identity.conftest import Person, person
from tests.identity.real_api import RealApi, real_api


@pytest.fixture
def inbox_settings(base_settings: Settings, auth_service: AuthService, task_queue: str) -> Settings:
    return base_settings.model_copy(
        update={
            "auth_url": auth_service.base_url,
            "auth_internal_url": auth_service.internal_url,
            "auth_internal_token": None,
            "auth_internal_token_api": SecretStr(auth_service.internal_tokens["api"]),
            "auth_internal_token_worker": SecretStr(auth_service.internal_tokens["worker"]),
            "temporal_task_queue": task_queue,
        }
    )


@pytest.fixture
async def inbox_api(
    inbox_settings: Settings,
    engine: Any,
    session_factory: SessionFactory,
    temporal_client: Client,
) -> AsyncIterator[RealApi]:
    # A fresh app used to start with empty rate limits; they live in PostgreSQL now.
    async with session_factory.begin() as db:
        await db.execute(delete(ApiRateLimit))
    async with real_api(inbox_settings, engine, session_factory, temporal_client) as api:
        yield api


@pytest.fixture
async def api(inbox_api: RealApi) -> httpx.AsyncClient:
    return inbox_api.client


@pytest.fixture
async def driver(auth_service: AuthService) -> Person:
    return await person(auth_service, "inbox-driver")


@pytest.fixture
async def other_driver(auth_service: AuthService) -> Person:
    return await person(auth_service, "inbox-other")


@pytest.fixture
async def admin(auth_service: AuthService) -> Person:
    return await person(auth_service, "inbox-admin", role="admin")


async def impersonating(api: httpx.AsyncClient, admin: Person, target: Person) -> dict[str, str]:
    """Headers of an impersonation session ``admin`` started for ``target``."""
    started = await api.post(
        "/api/v1/impersonation", json={"user_id": target.user_id}, headers=admin.headers
    )
    assert started.status_code == 201, started.text
    return {"Authorization": f"Bearer {started.json()['jwt']}"}
