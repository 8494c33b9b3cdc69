"""``GET /api/health``: ``ok | degraded | unhealthy`` per dependency.

The database is essential (unhealthy without it); Temporal, auth and billing degrade the service
(chargers are still answered, sessions queue in the outbox) but do not make it unhealthy. With
SteVe configured, ``steve_sync`` is down (so: degraded) while a sync run has been running for
over 30 minutes (docs/steve.md).

The route is public (load balancers probe it), so it says *whether* each dependency answers,
never why not: an exception's text names hosts, ports, users and versions. The reason goes to
the log (``polaris.api.health``), where operators read it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Literal

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text

from api.deps import AppState
from services.steve import stale_runs

log = logging.getLogger("polaris.api.health")

Status = Literal["ok", "degraded", "unhealthy"]
CHECK_TIMEOUT_S = 3.0

router = APIRouter()


class DependencyHealth(BaseModel):
    status: Literal["ok", "down"]
    latency_ms: int


class Health(BaseModel):
    status: Status
    dependencies: dict[str, DependencyHealth]


async def _timed(name: str, check: Callable[[], Awaitable[None]]) -> DependencyHealth:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check(), CHECK_TIMEOUT_S)
    except Exception as exc:
        detail = type(exc).__name__ if not str(exc) else f"{type(exc).__name__}: {exc}"[:200]
        log.warning("health: %s is down: %s", name, detail)
        return DependencyHealth(status="down", latency_ms=_ms(started))
    return DependencyHealth(status="ok", latency_ms=_ms(started))


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


async def check_all(state: AppState) -> Health:
    async def database() -> None:
        async with state.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def temporal() -> None:
        client = await state.temporal()
        await client.service_client.check_health()

    def http_check(url: str) -> Callable[[], Awaitable[None]]:
        async def check() -> None:
            response = await state.http.get(url)
            if response.status_code >= 500:
                raise httpx.HTTPStatusError(
                    f"HTTP {response.status_code}", request=response.request, response=response
                )

        return check

    settings = state.settings
    checks = {
        "database": database,
        "temporal": temporal,
        "auth": http_check(f"{settings.auth_base_url}/healthz"),
        "billing": http_check(f"{settings.lago_base_url}/health"),
    }
    if settings.steve_api_url:

        async def steve_sync() -> None:
            stuck = await stale_runs(state.sessions)
            if stuck:
                raise RuntimeError(f"{stuck} SteVe sync run(s) running for over 30 minutes")

        checks["steve_sync"] = steve_sync
    results = await asyncio.gather(*(_timed(name, fn) for name, fn in checks.items()))
    deps = dict(zip(checks, results, strict=True))
    if deps["database"].status == "down":
        overall: Status = "unhealthy"
    elif any(d.status == "down" for d in deps.values()):
        overall = "degraded"
    else:
        overall = "ok"
    return Health(status=overall, dependencies=deps)


@router.get("/api/health", response_model=Health)
async def health(request: Request) -> JSONResponse:
    result = await check_all(request.app.state.polaris)
    code = 503 if result.status == "unhealthy" else 200
    return JSONResponse(result.model_dump(), status_code=code)
