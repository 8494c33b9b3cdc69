"""The FastAPI application factory (no globals: settings are passed in)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from api import (
    console,
    health,
    routes_audit,
    routes_billing,
    routes_cards,
    routes_chargers,
    routes_codec,
    routes_driver,
    routes_files,
    routes_firmware,
    routes_kpis,
    routes_local_lists,
    routes_me,
    routes_notifications,
    routes_operations,
    routes_reservations,
    routes_scan,
    routes_sessions,
    routes_sites,
    routes_steve,
    routes_stream,
    routes_users,
    routes_webhooks,
    webhooks_lago,
)
from api.auth_jwt import JwtVerifier
from api.authz import require_live_admin
from api.deps import AppState
from api.errors import install_error_handlers
from api.observability import RequestContext
from api.ratelimit import RateLimitHeaders, prune_rate_limits_forever
from config.settings import Settings
from db.engine import make_engine, make_session_factory
from observability import tracing
from observability.http import ObservabilityServer


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.require_database_url())
        async with httpx.AsyncClient(timeout=3.0) as http:
            app.state.polaris = AppState(
                settings=settings,
                engine=engine,
                sessions=make_session_factory(engine),
                http=http,
                verifier=JwtVerifier.for_auth_service(settings.auth_base_url, http_client=http),
            )
            state: AppState = app.state.polaris
            metrics: ObservabilityServer | None = None
            if settings.api_metrics_port is not None:

                async def healthy() -> tuple[bool, dict[str, object]]:
                    result = await health.check_all(state)
                    return result.status != "unhealthy", result.model_dump()

                metrics = ObservabilityServer(
                    settings.metrics_host, settings.api_metrics_port, health=healthy
                )
                await metrics.start()
            app.state.metrics = metrics
            # Full rate-limit buckets deleted now and then (api/ratelimit.py).
            pruning = asyncio.create_task(prune_rate_limits_forever(engine))
            try:
                yield
            finally:
                pruning.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pruning
                hub = app.state.polaris.live_hub
                if hub is not None:
                    await hub.stop()
                if metrics is not None:
                    await metrics.stop()
                await engine.dispose()

    app = FastAPI(
        title="Polaris Express API",
        version="1",
        lifespan=lifespan,
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
    )
    install_error_handlers(app)
    app.add_middleware(RateLimitHeaders)
    app.add_middleware(RequestContext)
    if tracing.enabled():
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(app, excluded_urls="/api/health")
    app.include_router(health.router)
    app.include_router(webhooks_lago.router)
    app.include_router(webhooks_lago.build_admin_router(require_live_admin))
    for family in (
        routes_me,
        # Before routes_chargers: /api/v1/chargers/nearby is not a charge box id.
        routes_driver,
        routes_notifications,
        routes_operations,
        routes_cards,
        routes_users,
        routes_sessions,
        routes_audit,
        routes_scan,
        routes_billing,
        routes_kpis,
        routes_chargers,
        routes_sites,
        routes_local_lists,
        routes_firmware,
        routes_files,
        routes_stream,
        routes_reservations,
        routes_webhooks,
        routes_codec,
        routes_steve,
    ):
        app.include_router(family.router)
    # The web console: server-rendered pages under /console (api/console/, docs/console.md).
    console.install(app)
    return app
