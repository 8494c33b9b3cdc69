"""``/api/v1/steve/…``: SteVe sync runs and Adaptive Cadence for operators
(``services/steve.py``, docs/steve.md). Every route is admin-only."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from api.authz import AdminUser
from api.services import Services, actor_of
from services import steve as steve_service

router = APIRouter(prefix="/api/v1/steve", tags=["steve"])


@router.post("/sync", status_code=202)
async def trigger_sync(admin: AdminUser, services: Services) -> dict[str, Any]:
    """Start a sync run now (a second trigger within the same minute names the same run) and
    put the cadence back to Active."""
    return await steve_service.trigger_sync(services, actor_of(admin))


@router.get("/runs")
async def list_runs(
    admin: AdminUser,
    services: Services,
    limit: Annotated[int, Query(ge=1, le=steve_service.RUNS_MAX)] = 20,
) -> list[dict[str, Any]]:
    """The latest runs, newest first: status, counters, per-segment log and errors."""
    return await steve_service.list_runs(services, actor_of(admin), limit=limit)


@router.get("/runs/{run_id}")
async def get_run(
    admin: AdminUser, services: Services, run_id: Annotated[int, Path(ge=1)]
) -> dict[str, Any]:
    return await steve_service.get_run(services, actor_of(admin), run_id)


@router.post("/runs/{run_id}/retry", status_code=202)
async def retry_run(
    admin: AdminUser, services: Services, run_id: Annotated[int, Path(ge=1)]
) -> dict[str, Any]:
    """Run a failed run again, as a new run."""
    return await steve_service.retry_run(services, actor_of(admin), run_id)


@router.get("/cadence")
async def cadence(admin: AdminUser, services: Services) -> dict[str, Any]:
    """Adaptive Cadence: mode, interval, idle streak, last activity, next run."""
    return await steve_service.cadence(services, actor_of(admin))
