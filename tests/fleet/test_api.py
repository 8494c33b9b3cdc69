"""``/api/v1/chargers``, ``/api/v1/sites``, ``/api/v1/tariffs`` through the real API app, real
BetterAuth sessions and JWTs, real PostgreSQL: admins get answers, drivers 403 on every route;
bad input 422 with issues, unknown ids 404, duplicates 409; changes audited."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
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
from db.models import AuditLog, ChargingSession, Tariff, TariffVersion
from tests.fixtures.auth import AuthService
from tests.identity.conftest import person

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def api(
    base_settings: Settings,
    auth_service: AuthService,
    engine: Any,
    session_factory: SessionFactory,
    temporal_client: Client,
) -> AsyncIterator[httpx.AsyncClient]:
    settings = base_settings.model_copy(
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


def routes(cb: str, site: str, code: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    return [
        ("GET", "/api/v1/chargers", None),
        ("GET", "/api/v1/chargers/pending", None),
        ("GET", f"/api/v1/chargers/{cb}", None),
        ("POST", "/api/v1/chargers", {"charge_box_id": f"{cb}-X", "connectors": 1}),
        ("PATCH", f"/api/v1/chargers/{cb}", {"label": "x"}),
        ("POST", f"/api/v1/chargers/{cb}/password", None),
        ("DELETE", f"/api/v1/chargers/{cb}", None),
        ("GET", "/api/v1/sites", None),
        ("GET", f"/api/v1/sites/{site}", None),
        ("POST", "/api/v1/sites", {"name": f"{site}-X"}),
        ("PATCH", f"/api/v1/sites/{site}", {"address": "x"}),
        ("GET", "/api/v1/tariffs", None),
        ("GET", f"/api/v1/tariffs/{code}", None),
        ("POST", "/api/v1/tariffs", {"code": f"{code}-X", "currency": "EUR"}),
        ("POST", f"/api/v1/tariffs/{code}/versions", {"price_per_kwh_minor": 1}),
    ]


async def test_fleet_routes_are_for_admins_only(
    api: httpx.AsyncClient, auth_service: AuthService, session_factory: SessionFactory
) -> None:
    admin = await person(auth_service, "fleetadmin", role="admin")
    driver = await person(auth_service, "fleetdriver")
    suffix = uuid.uuid4().hex[:8].upper()
    cb, site, code = f"API-{suffix}", f"Site-{suffix}", f"TAR-{suffix}"

    # The admin builds the fleet.
    made = await api.post(
        "/api/v1/sites", json={"name": site, "timezone": "Europe/Paris"}, headers=admin.headers
    )
    assert made.status_code == 201, made.text
    made = await api.post(
        "/api/v1/tariffs",
        json={"code": code, "currency": "EUR", "price_per_kwh_minor": 30},
        headers=admin.headers,
    )
    assert made.status_code == 201, made.text
    made = await api.post(
        "/api/v1/chargers",
        json={"charge_box_id": cb, "connectors": 2, "site": site, "tariff": code},
        headers=admin.headers,
    )
    assert made.status_code == 201, made.text
    body = made.json()
    assert len(body["password"]) == 40
    assert body["charger"]["site"] == site and body["charger"]["tariff"] == code

    # A driver is refused everywhere, and changes nothing.
    for method, url, payload in routes(cb, site, code):
        answer = await api.request(method, url, json=payload, headers=driver.headers)
        assert answer.status_code == 403, (method, url, answer.text)
        assert answer.json()["error"] == "FORBIDDEN"
        anonymous = await api.request(method, url, json=payload)
        assert anonymous.status_code == 401, (method, url)

    # The admin reads everything.
    for method, url, _ in routes(cb, site, code):
        if method == "GET":
            answer = await api.get(url, headers=admin.headers)
            assert answer.status_code == 200, (url, answer.text)
    shown = (await api.get(f"/api/v1/chargers/{cb}", headers=admin.headers)).json()
    assert [c["connector_id"] for c in shown["connectors"]] == [0, 1, 2]
    assert shown["authentication"]["mode"] == "password"

    patched = await api.patch(
        f"/api/v1/chargers/{cb}",
        json={"allow_unauthenticated": True, "label": "Bay 1"},
        headers=admin.headers,
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["warnings"] and "ANYONE" in patched.json()["warnings"][0]
    rotated = await api.post(f"/api/v1/chargers/{cb}/password", headers=admin.headers)
    assert rotated.status_code == 200 and rotated.json()["pending"] is True
    version = await api.post(
        f"/api/v1/tariffs/{code}/versions", json={"price_per_kwh_minor": 35}, headers=admin.headers
    )
    assert version.status_code == 201, version.text
    assert [v["version"] for v in version.json()["versions"]] == [1, 2]

    # Errors: 422 with issues, 404, 409.
    bad = await api.post(
        "/api/v1/chargers",
        json={"charge_box_id": "bad id/x", "connectors": 0},
        headers=admin.headers,
    )
    assert bad.status_code == 422
    assert bad.json()["error"] == "VALIDATION_FAILED"
    assert {tuple(i["path"])[-1] for i in bad.json()["issues"]} >= {"charge_box_id", "connectors"}
    unknown_site = await api.post(
        "/api/v1/chargers",
        json={"charge_box_id": f"{cb}-Y", "connectors": 1, "site": "nowhere"},
        headers=admin.headers,
    )
    assert unknown_site.status_code == 422 and unknown_site.json()["issues"][0]["path"] == ["site"]
    bad_zone = await api.post(
        "/api/v1/sites",
        json={"name": f"{site}-Z", "timezone": "Nowhere/Land"},
        headers=admin.headers,
    )
    assert bad_zone.status_code == 422
    assert (await api.get("/api/v1/chargers/NOPE-0", headers=admin.headers)).status_code == 404
    assert (await api.get("/api/v1/tariffs/NOPE-0", headers=admin.headers)).status_code == 404
    assert (await api.get("/api/v1/sites/nowhere-0", headers=admin.headers)).status_code == 404
    duplicate = await api.post(
        "/api/v1/chargers", json={"charge_box_id": cb, "connectors": 1}, headers=admin.headers
    )
    assert duplicate.status_code == 409 and duplicate.json()["error"] == "CONFLICT"
    assert (
        await api.post("/api/v1/sites", json={"name": site}, headers=admin.headers)
    ).status_code == 409

    # The operators' session detail names the tariff version the session is billed under.
    workflow_id = f"session:fleet-api:{suffix}"
    async with session_factory.begin() as db:
        version_id = await db.scalar(
            select(TariffVersion.id)
            .join(Tariff, Tariff.id == TariffVersion.tariff_id)
            .where(Tariff.code == code, TariffVersion.version == 2)
        )
        db.add(
            ChargingSession(
                workflow_id=workflow_id,
                state="closed",
                charge_box_id=cb,
                tariff_version_id=version_id,
            )
        )
    detail = await api.get(f"/api/v1/sessions/{workflow_id}", headers=admin.headers)
    assert detail.status_code == 200, detail.text
    assert detail.json()["tariff"]["code"] == code
    assert detail.json()["tariff"]["version"] == 2
    assert detail.json()["tariff"]["price_per_kwh_minor"] == 35

    removed = await api.delete(f"/api/v1/chargers/{cb}", headers=admin.headers)
    assert removed.status_code == 200 and removed.json()["decommissioned_at"]
    listed = (await api.get("/api/v1/chargers", headers=admin.headers)).json()
    assert cb not in [c["charge_box_id"] for c in listed]
    everything = (await api.get("/api/v1/chargers?all=true", headers=admin.headers)).json()
    assert cb in [c["charge_box_id"] for c in everything]

    async with session_factory() as db:
        audit = (
            await db.scalars(select(AuditLog).where(AuditLog.subject == cb).order_by(AuditLog.id))
        ).all()
    assert [a.action for a in audit] == [
        "charger.added",
        "charger.updated",
        "charger.password_rotated",
        "charger.decommissioned",
    ]
    assert all(a.actor == f"user:{admin.user_id}" and a.source == "203.0.113.9" for a in audit)
    assert all(body["password"] not in str(a.details) for a in audit)
    assert all(rotated.json()["password"] not in str(a.details) for a in audit)
