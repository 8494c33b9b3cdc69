"""``polaris api``: serve the HTTP API with uvicorn."""

from __future__ import annotations

import uvicorn

from api.app import create_app
from config.settings import Settings, load_settings


async def run_api(settings: Settings) -> None:
    config = uvicorn.Config(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.log_level.lower(),
        # Secrets travel in headers; uvicorn's access log prints only method, path and status.
        access_log=True,
        proxy_headers=True,
    )
    await uvicorn.Server(config).serve()


if __name__ == "__main__":
    import asyncio

    asyncio.run(run_api(load_settings()))
