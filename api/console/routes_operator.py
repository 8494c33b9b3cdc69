"""Operator pages (``/console/operator``): the network run from a browser.

Every page reads and writes through the API (``api_client.Api``, in-process), as the signed-in
operator: the same authorization, the same ``{error, message, issues}`` answers. Fragments that
change live (``*_fragment`` routes) are re-fetched by htmx when the page's SSE stream says so.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.console.web import Operator, api_for, page

router = APIRouter(prefix="/console/operator", include_in_schema=False)

ACTIVE_STATES = "requested,pre_authorized,charging,suspended"
FAILED_OPERATION_STATUSES = ("failed", "timed_out", "charger_offline", "rejected")


# -- dashboard ---------------------------------------------------------------------------------


async def _dashboard_data(request: Request, user: Operator) -> dict[str, Any]:
    api = api_for(request, user)
    kpis = await api.get("/api/v1/kpis")
    live = await api.get("/api/v1/sessions", state=ACTIVE_STATES, limit=50)
    chargers = await api.get("/api/v1/chargers")
    offline = [c for c in chargers if not c.get("connected")]
    operations = await api.get("/api/v1/operations", limit=100)
    failed = [o for o in operations if o.get("status") in FAILED_OPERATION_STATUSES][:10]
    return {
        "kpis": kpis,
        "live_sessions": live,
        "offline": offline[:20],
        "failed_operations": failed,
    }


@router.get("")
async def dashboard(request: Request, user: Operator) -> Response:
    data = await _dashboard_data(request, user)
    return page(request, "operator/dashboard.html", {"title": "Dashboard", **data})


@router.get("/fragments/dashboard")
async def dashboard_fragment(request: Request, user: Operator) -> Response:
    data = await _dashboard_data(request, user)
    return page(request, "operator/_dashboard_live.html", data)
