"""``GET /api/v1/kpis``: the network at a glance for operators (``services/kpis.py``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.authz import AdminUser
from api.services import Services, actor_of
from services import kpis as kpi_service

router = APIRouter(prefix="/api/v1", tags=["operator views"])


@router.get("/kpis")
async def kpis(
    admin: AdminUser,
    services: Services,
    tz: Annotated[
        str | None, Query(max_length=64, description="IANA time zone; default: the operator's")
    ] = None,
) -> dict[str, Any]:
    """Energy today and this month (from the meters, split at midnight), active sessions,
    chargers online/offline, faulted connectors, operations failed in 24 h."""
    return await kpi_service.kpis(services, actor_of(admin), timezone=tz)
