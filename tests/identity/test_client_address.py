"""Attack: a client forging ``X-Forwarded-For`` to escape rate limits and forge audit sources.

The real API app (every router, the real rate limits and audit writes) on the real database, the
real auth service and the Lago sandbox. The app's socket peer is 203.0.113.7; the forged header
names other addresses. Only a configured proxy's header counts (``POLARIS_API_TRUSTED_PROXIES``).
"""

from __future__ import annotations

import uuid
from ipaddress import ip_network

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from config.settings import Settings
from db.engine import SessionFactory
from db.models import AuditLog
from db.ratelimits import ApiRateLimit
from tests.fixtures.auth import AuthService
from tests.identity.conftest import person
from tests.identity.real_api import RealApi, real_api

pytestmark = pytest.mark.timeout(120)

PEER = "203.0.113.7"
# An IP-keyed limit of 5 a minute: 20 requests cannot all pass unless they use separate buckets.
LIMITED = "/api/v1/scan/login"
REQUESTS = 20


async def buckets(api: RealApi, family: str) -> set[str]:
    """The keys counted for ``family`` in the shared rate limits (``api_rate_limits``)."""
    async with api.state.sessions() as db:
        keys = await db.scalars(select(ApiRateLimit.key).where(ApiRateLimit.family == family))
        return set(keys.all())


async def hammer(api: RealApi, forwarded: list[str]) -> list[int]:
    codes = []
    for value in forwarded:
        # An empty body: the rate limit runs before validation, so nothing gets armed.
        answer = await api.client.post(LIMITED, json={}, headers={"X-Forwarded-For": value})
        codes.append(answer.status_code)
    return codes


def rotating(n: int) -> list[str]:
    return [f"198.51.100.{i}" for i in range(1, n + 1)]


async def test_rotating_forwarded_for_from_a_direct_peer_does_not_escape_the_rate_limit(
    identity_settings: Settings,
    engine: AsyncEngine,
    session_factory: SessionFactory,
    temporal_client: Client,
) -> None:
    async with real_api(identity_settings, engine, session_factory, temporal_client) as api:
        codes = await hammer(api, rotating(REQUESTS))
        assert 429 in codes, codes
        assert await buckets(api, "scan-login") == {f"ip:{PEER}"}


async def test_forwarded_for_from_a_trusted_proxy_is_honoured(
    identity_settings: Settings,
    engine: AsyncEngine,
    session_factory: SessionFactory,
    temporal_client: Client,
) -> None:
    settings = identity_settings.model_copy(
        update={"api_trusted_proxies": [ip_network("203.0.113.0/24")]}
    )
    async with real_api(settings, engine, session_factory, temporal_client) as api:
        codes = await hammer(api, rotating(REQUESTS))
        assert 429 not in codes, codes  # one request per client: each has its own bucket
        # A client's own entry left of the real one is ignored: the proxy appended the truth.
        await hammer(api, ["10.9.9.9, 192.0.2.55", "10.9.9.8, 192.0.2.55"])
        assert await buckets(api, "scan-login") == {f"ip:{a}" for a in rotating(REQUESTS)} | {
            "ip:192.0.2.55"
        }


async def audit_source(factory: SessionFactory, subject: str) -> str | None:
    async with factory() as db:
        row = (await db.scalars(select(AuditLog).where(AuditLog.subject == subject))).one()
    return row.source


@pytest.mark.parametrize(
    ("trusted", "recorded"), [(False, PEER), (True, "192.0.2.66")], ids=["direct", "via-proxy"]
)
async def test_audit_records_the_socket_peer_unless_a_trusted_proxy_forwarded(
    identity_settings: Settings,
    engine: AsyncEngine,
    session_factory: SessionFactory,
    temporal_client: Client,
    auth_service: AuthService,
    trusted: bool,
    recorded: str,
) -> None:
    proxies = [ip_network(f"{PEER}/32")] if trusted else []
    settings = identity_settings.model_copy(update={"api_trusted_proxies": proxies})
    admin = await person(auth_service, "auditor", role="admin")
    lago_id = str(uuid.uuid4())
    async with real_api(settings, engine, session_factory, temporal_client) as api:
        # An audited admin action (the invoice does not exist; the attempt is audited anyway).
        answer = await api.client.post(
            f"/api/v1/invoices/{lago_id}/finalize",
            headers={**admin.headers, "X-Forwarded-For": "192.0.2.66"},
        )
    assert answer.status_code == 404, answer.text
    assert await audit_source(session_factory, f"invoice:{lago_id}") == recorded
