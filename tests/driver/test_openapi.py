"""Every driver route is in the served OpenAPI document, with a summary and a typed answer."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.timeout(60)

DRIVER_ROUTES = [
    ("get", "/api/v1/chargers/nearby", "DriverChargerOut"),
    ("get", "/api/v1/sites/{site_id}/chargers", "DriverChargerOut"),
    ("post", "/api/v1/me/sessions", "StartOut"),
    ("post", "/api/v1/me/sessions/{workflow_id}/stop", "StopOut"),
    ("get", "/api/v1/me/sessions/{workflow_id}", "SessionDetailOut"),
    ("get", "/api/v1/me/sessions/{workflow_id}/meter", "MeterOut"),
    ("get", "/api/v1/me/dashboard", "DashboardOut"),
]


async def test_driver_routes_are_documented(api: httpx.AsyncClient) -> None:
    document = (await api.get("/api/openapi.json")).json()
    for method, path, schema in DRIVER_ROUTES:
        operation = document["paths"][path][method]
        assert operation["summary"] and "drivers" in operation["tags"], path
        answer = str(operation["responses"]["200"]["content"]["application/json"]["schema"])
        assert f"#/components/schemas/{schema}" in answer, (path, answer)
    usage = document["components"]["schemas"]["UsageOut"]["properties"]
    assert "from" in usage and "from_" not in usage
