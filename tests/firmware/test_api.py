"""The firmware routes over the real app and the real auth service: admins only (drivers 403,
no token 401), uploads streamed with their digest and size limit, audit rows written."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select
from temporalio.client import Client

from api.app import create_app
from api.auth_jwt import JwtVerifier
from api.deps import AppState
from config.settings import Settings
from db.engine import SessionFactory
from db.models import AuditLog
from tests.fixtures.auth import AuthService
from tests.identity.conftest import Person, person

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def api(
    base_settings: Settings,
    auth_service: AuthService,
    engine: Any,
    session_factory: SessionFactory,
    temporal_client: Client,
    task_queue: str,
    tmp_path: Path,
) -> AsyncIterator[httpx.AsyncClient]:
    settings = base_settings.model_copy(
        update={
            "auth_url": auth_service.base_url,
            "auth_internal_url": auth_service.internal_url,
            "auth_internal_token": SecretStr(auth_service.internal_tokens["api"]),
            "temporal_task_queue": task_queue,
            "files_dir": tmp_path / "files",
            "firmware_max_bytes": 100_000,
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


ROUTES: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/api/v1/firmware?version=1&name=a.bin", {"content": b"x"}),
    ("GET", "/api/v1/firmware", {}),
    ("POST", "/api/v1/chargers/CB-X/firmware", {"json": {"firmware_id": "f"}}),
    ("GET", "/api/v1/chargers/CB-X/firmware", {}),
    ("POST", "/api/v1/firmware-campaigns", {"json": {"firmware_id": "f", "chargers": ["A"]}}),
    ("GET", "/api/v1/firmware-campaigns", {}),
    ("GET", "/api/v1/firmware-campaigns/c", {}),
    ("POST", "/api/v1/firmware-campaigns/c/halt", {}),
    ("POST", "/api/v1/chargers/CB-X/diagnostics", {}),
    ("GET", "/api/v1/chargers/CB-X/diagnostics", {}),
    ("GET", "/api/v1/chargers/CB-X/diagnostics/u/file", {}),
]


async def test_drivers_and_anonymous_callers_are_refused(
    api: httpx.AsyncClient, auth_service: AuthService
) -> None:
    driver: Person = await person(auth_service, "fw-driver")
    for method, url, kwargs in ROUTES:
        anonymous = await api.request(method, url, **kwargs)
        assert anonymous.status_code == 401, (method, url)
        refused = await api.request(method, url, headers=driver.headers, **kwargs)
        assert refused.status_code == 403, (method, url, refused.text)


async def test_admin_uploads_lists_and_is_audited(
    api: httpx.AsyncClient, auth_service: AuthService, session_factory: SessionFactory
) -> None:
    admin = await person(auth_service, "fw-admin", role="admin")
    image = b"\x7fELF-firmware" * 1000
    answer = await api.post(
        "/api/v1/firmware?version=5.1.0&name=acme-5.1.0.bin",
        content=image,
        headers={**admin.headers, "Content-Type": "application/octet-stream"},
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["sha256"] == hashlib.sha256(image).hexdigest()
    assert body["size_bytes"] == len(image) and body["version"] == "5.1.0"
    listed = await api.get("/api/v1/firmware", headers=admin.headers)
    assert body["id"] in [row["id"] for row in listed.json()]
    async with session_factory() as db:
        audit = (await db.scalars(select(AuditLog).where(AuditLog.subject == body["id"]))).one()
    assert audit.action == "firmware.upload" and audit.actor == f"user:{admin.user_id}"

    too_big = await api.post(
        "/api/v1/firmware?version=6&name=big.bin", content=b"0" * 100_001, headers=admin.headers
    )
    assert too_big.status_code == 413
    bad_name = await api.post(
        "/api/v1/firmware?version=6&name=../x.bin", content=b"0", headers=admin.headers
    )
    assert bad_name.status_code == 422
    unknown = await api.post(
        "/api/v1/firmware-campaigns",
        json={"firmware_id": body["id"], "chargers": ["NO-SUCH-CHARGER"]},
        headers=admin.headers,
    )
    assert unknown.status_code == 404
    offline = await api.post(
        "/api/v1/chargers/NO-SUCH-CHARGER/firmware",
        json={"firmware_id": body["id"]},
        headers=admin.headers,
    )
    assert offline.status_code == 404
