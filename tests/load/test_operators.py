"""Operators and the site limit: the API (admins only, errors in the envelope, documented in
OpenAPI) and ``polaris sites set-limit|load|clear-limit`` as a subprocess against the real stack."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select, update
from temporalio.client import Client

from api.app import create_app
from api.auth_jwt import JwtVerifier
from api.deps import AppState
from config.settings import Settings
from db.engine import SessionFactory
from db.models import AuditLog, Charger
from tests.fixtures.auth import AuthService
from tests.fleet.test_cli import ROOT
from tests.gateway.conftest import seed_charger
from tests.helpers import eventually
from tests.identity.conftest import person
from tests.load.conftest import Stack, charge_point

# A hang guard, not a measurement: each `polaris` process imports the whole CLI (seconds of
# CPU), which a loaded machine stretches to tens of seconds per command.
pytestmark = pytest.mark.timeout(600)


async def polaris(
    settings: Settings, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The CLI as a subprocess with the platform's environment (and Temporal when given)."""
    full = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "POLARIS_ENV": "test",
        "POLARIS_DATABASE_URL": settings.require_database_url(),
        "POLARIS_DATA_DIR": str(settings.data_dir),
        "POLARIS_LAGO_API_KEY": "load-cli-test-key",
        "POLARIS_LAGO_WEBHOOK_SECRET": "load-cli-test-secret",
        "POLARIS_LOG_LEVEL": "WARNING",
        **(env or {}),
    }
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "cli.main", *args],
        env=full,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def ok_json(settings: Settings, *args: str, env: dict[str, str] | None = None) -> Any:
    done = await polaris(settings, *args, "--json", env=env)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return json.loads(done.stdout)


@pytest.fixture
async def api(
    load_settings: Settings,
    auth_service: AuthService,
    engine: Any,
    session_factory: SessionFactory,
    temporal_client: Client,
) -> AsyncIterator[httpx.AsyncClient]:
    settings = load_settings.model_copy(
        update={
            "auth_url": auth_service.base_url,
            "auth_internal_url": auth_service.internal_url,
            "auth_internal_token": None,
            "auth_internal_token_api": SecretStr(auth_service.internal_tokens["api"]),
        }
    )
    app = create_app(settings)
    async with httpx.AsyncClient(timeout=30.0) as http:
        state = AppState(
            settings=settings,
            engine=engine,
            sessions=session_factory,
            http=http,
            verifier=JwtVerifier.for_auth_service(settings.auth_base_url, http_client=http),
        )
        state._temporal = temporal_client
        app.state.polaris = state
        transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield client


async def test_load_limit_api(
    api: httpx.AsyncClient,
    auth_service: AuthService,
    session_factory: SessionFactory,
    stack: Stack,
) -> None:
    admin = await person(auth_service, "loadadmin", role="admin")
    driver = await person(auth_service, "loaddriver")
    site = f"Load-{uuid.uuid4().hex[:8]}"
    made = await api.post("/api/v1/sites", json={"name": site}, headers=admin.headers)
    assert made.status_code == 201, made.text
    site_id = made.json()["id"]
    cb = await seed_charger(session_factory)
    async with session_factory.begin() as db:
        await db.execute(update(Charger).where(Charger.charge_box_id == cb).values(site_id=site_id))

    routes: list[tuple[str, str, dict[str, Any] | None]] = [
        ("PATCH", f"/api/v1/sites/{site}/load-limit", {"kw": 50}),
        ("GET", f"/api/v1/sites/{site}/load", None),
        ("DELETE", f"/api/v1/sites/{site}/load-limit", None),
    ]
    for method, url, body in routes:
        refused = await api.request(method, url, json=body, headers=driver.headers)
        assert refused.status_code == 403, (method, url, refused.text)
        assert refused.json()["error"] == "FORBIDDEN"
        assert (await api.request(method, url, json=body)).status_code == 401

    async with charge_point(stack.gateway, cb) as cp:
        answer = await api.patch(
            f"/api/v1/sites/{site}/load-limit",
            json={"amps": 63, "phases": 3, "voltage": 230, "safe_amps": 10},
            headers=admin.headers,
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["limit"]["unit"] == "A" and body["limit"]["site_limit"] == 63
        assert body["limit"]["site_limit_w"] == 63 * 3 * 230
        assert body["limit"]["min_per_session"] == 6 and body["limit"]["safe_limit"] == 10
        assert body["signalled"] is True and body["workflow_id"] == f"site-load:{site_id}"
        # The charger gets the safe default in A.
        await eventually(lambda: cp.limit_of(1) == (10, "A"), timeout=60, message="default")

        async def acknowledged() -> bool:
            shown = await api.get(f"/api/v1/sites/{site_id}/load", headers=admin.headers)
            assert shown.status_code == 200
            assert shown.json()["defaults"][0]["acknowledged_limit"] == 10
            return True

        # The charger answers first, then we record it.
        await eventually(acknowledged, timeout=60, message="the default acknowledged")
        assert (await api.get(f"/api/v1/sites/{site}", headers=admin.headers)).json()["load"][
            "site_limit"
        ] == 63

        # Errors: the envelope with issues naming the fields.
        for payload, fields in [
            ({}, {"kw", "amps"}),
            ({"kw": 50, "amps": 63}, {"kw", "amps"}),
            ({"kw": -1}, {"kw"}),
            ({"kw": 50, "min_amps": 6}, {"min_amps"}),
            ({"amps": 32, "safe_amps": 40}, {"safe_amps"}),
            ({"amps": 32, "phases": 2}, {"phases"}),
            ({"kw": 50, "bogus": 1}, {"bogus"}),
        ]:
            bad = await api.patch(
                f"/api/v1/sites/{site}/load-limit", json=payload, headers=admin.headers
            )
            assert bad.status_code == 422, (payload, bad.text)
            assert bad.json()["error"] == "VALIDATION_FAILED"
            assert {i["path"][-1] for i in bad.json()["issues"]} >= fields, bad.json()
        missing = await api.patch(
            "/api/v1/sites/nowhere-0/load-limit", json={"kw": 5}, headers=admin.headers
        )
        assert missing.status_code == 404 and missing.json()["error"] == "NOT_FOUND"

        cleared = await api.delete(f"/api/v1/sites/{site}/load-limit", headers=admin.headers)
        assert cleared.status_code == 200 and cleared.json()["limit"] is None
        # The default profile is cleared on the charger.
        await eventually(lambda: cp.limit_of(1) is None, timeout=60, message="cleared")
        again = await api.delete(f"/api/v1/sites/{site}/load-limit", headers=admin.headers)
        assert again.status_code == 404

    async with session_factory() as db:
        actions = set(
            (
                await db.scalars(
                    select(AuditLog.action).where(AuditLog.subject == f"site:{site_id}")
                )
            ).all()
        )
    assert {"site.load_limit_set", "site.load_limit_cleared"} <= actions

    spec = (await api.get("/api/openapi.json")).json()
    assert "patch" in spec["paths"]["/api/v1/sites/{site}/load-limit"]
    assert "delete" in spec["paths"]["/api/v1/sites/{site}/load-limit"]
    load = spec["paths"]["/api/v1/sites/{site}/load"]["get"]
    assert load["summary"] and "SiteLoadView" in str(load["responses"]["200"])


async def test_load_commands(
    stack: Stack, load_settings: Settings, session_factory: SessionFactory
) -> None:
    settings = load_settings
    site = f"LoadCli-{uuid.uuid4().hex[:8]}"
    site_id = (await ok_json(settings, "sites", "add", site))["id"]
    cb = await seed_charger(session_factory)
    async with session_factory.begin() as db:
        await db.execute(
            update(Charger)
            .where(Charger.charge_box_id == cb)
            .values(site_id=site_id, max_power_w=22_000)
        )
    env = {
        "POLARIS_TEMPORAL_ADDRESS": settings.temporal_address,
        "POLARIS_TEMPORAL_TASK_QUEUE": settings.temporal_task_queue,
    }
    async with charge_point(stack.gateway, cb) as cp:
        view = await ok_json(settings, "sites", "set-limit", site, "--kw", "50", env=env)
        assert view["limit"]["unit"] == "W" and view["limit"]["site_limit"] == 50_000
        assert view["signalled"] is True
        await eventually(lambda: cp.limit_of(1) == (4_140, "W"), timeout=60, message="default")

        async def acknowledged() -> bool:
            loaded = await ok_json(settings, "sites", "load", site)
            assert loaded["defaults"][0]["acknowledged_limit"] == 4_140
            return True

        await eventually(acknowledged, timeout=60, message="the default acknowledged")
        text = await polaris(settings, "sites", "load", site)
        assert text.returncode == 0 and "limit 50000 W" in text.stdout

        bad = await polaris(settings, "sites", "set-limit", site, "--amps", "32", "--min-kw", "1")
        assert bad.returncode != 0 and "min_kw" in bad.stderr
        done = await ok_json(settings, "sites", "clear-limit", site, env=env)
        assert done["limit"] is None
    missing = await polaris(settings, "sites", "load", "nowhere-0", "--json")
    assert missing.returncode != 0 and '"NOT_FOUND"' in missing.stdout
