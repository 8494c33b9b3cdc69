"""Attack: an anonymous caller reads ``/api/health`` to learn hosts, ports and errors inside.

The real API app with the real database (Temporal reached lazily, as the app does); the auth
service and Lago point at ports where nothing listens, so their checks fail with exception text
that names internal addresses.
"""

from __future__ import annotations

import logging

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from config.settings import Settings
from db.engine import SessionFactory
from tests.helpers import free_port
from tests.identity.real_api import real_api

pytestmark = pytest.mark.timeout(60)


async def test_health_tells_anonymous_callers_the_status_only(
    base_settings: Settings,
    engine: AsyncEngine,
    session_factory: SessionFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    auth_port, lago_port = free_port(), free_port()
    settings = base_settings.model_copy(
        update={
            "auth_url": f"http://127.0.0.1:{auth_port}",
            "lago_api_url": f"http://127.0.0.1:{lago_port}",
        }
    )
    with caplog.at_level(logging.WARNING, logger="polaris.api.health"):
        async with real_api(settings, engine, session_factory, None) as api:
            answer = await api.client.get("/api/health")
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "degraded"
    deps = body["dependencies"]
    assert (deps["database"]["status"], deps["auth"]["status"], deps["billing"]["status"]) == (
        "ok",
        "down",
        "down",
    )
    assert all(set(dep) == {"status", "latency_ms"} for dep in body["dependencies"].values())
    for leak in (str(auth_port), str(lago_port), "127.0.0.1", "Error"):
        assert leak not in answer.text
    # The operator still learns why, from the log.
    assert "auth is down: ConnectError" in caplog.text
    assert "billing is down: ConnectError" in caplog.text
