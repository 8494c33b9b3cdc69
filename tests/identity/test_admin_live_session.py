"""Attack: a demoted or banned admin keeps using a still-valid JWT that says ``role: admin``.

The real API app and the real auth service. Admin reads and the Lago webhook replay check the
live session (api/authz.py ``AdminUser``), so the change counts at once, not when the JWT
expires 15 minutes later.
"""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from activities.auth_client import AuthServiceClient
from config.settings import Settings
from db.engine import SessionFactory
from tests.fixtures.auth import AuthService
from tests.identity.conftest import Person, person
from tests.identity.real_api import RealApi, real_api

pytestmark = pytest.mark.timeout(120)

REPLAY_MISSING = "/api/admin/webhooks/lago/999999999/replay"


async def admin_reads(api: RealApi, who: Person) -> tuple[int, int, int]:
    """(user list, session list, webhook replay of a missing event) status codes."""
    users = await api.client.get("/api/v1/users", headers=who.headers)
    sessions = await api.client.get("/api/v1/sessions", headers=who.headers)
    replay = await api.client.post(REPLAY_MISSING, headers=who.headers)
    return users.status_code, sessions.status_code, replay.status_code


async def test_an_admin_demoted_through_the_api_loses_admin_routes_at_once(
    identity_settings: Settings,
    engine: AsyncEngine,
    session_factory: SessionFactory,
    temporal_client: Client,
    auth_service: AuthService,
) -> None:
    boss = await person(auth_service, "boss", role="admin")
    demoted = await person(auth_service, "demoted", role="admin")
    async with real_api(identity_settings, engine, session_factory, temporal_client) as api:
        assert await admin_reads(api, demoted) == (200, 200, 404)  # the check is cached now
        changed = await api.client.post(
            f"/api/v1/users/{demoted.user_id}/role", json={"role": "customer"}, headers=boss.headers
        )
        assert changed.status_code == 200, changed.text
        # Same JWT, still claiming admin and valid for minutes: refused.
        assert await admin_reads(api, demoted) == (403, 403, 403)


@pytest.mark.parametrize("change", ["demote", "ban"])
async def test_a_change_made_at_the_auth_service_closes_admin_routes(
    identity_settings: Settings,
    engine: AsyncEngine,
    session_factory: SessionFactory,
    temporal_client: Client,
    auth_service: AuthService,
    change: str,
) -> None:
    # Another API process (or an operator at the auth service) made the change: with the cache
    # off the next admin request sees it; with the default cache, at most that many seconds later.
    settings = identity_settings.model_copy(update={"api_admin_check_cache_s": 0.0})
    target = await person(auth_service, f"admin-{change}", role="admin")
    async with real_api(settings, engine, session_factory, temporal_client) as api:
        assert await admin_reads(api, target) == (200, 200, 404)
        async with httpx.AsyncClient(timeout=10) as http:
            auth = AuthServiceClient(
                http,
                auth_service.base_url,
                auth_service.internal_tokens["api"],
                internal_url=auth_service.internal_url,
            )
            if change == "demote":
                await auth.set_role(target.user_id, "customer")
                expected = (403, 403, 403)
            else:
                await auth.ban(target.user_id, reason="compromised", expires_in_s=None)
                expected = (401, 401, 401)
        assert await admin_reads(api, target) == expected
