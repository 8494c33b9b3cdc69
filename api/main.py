"""``polaris api``: serve the HTTP API with uvicorn."""

from __future__ import annotations

import uvicorn

from api.access_log import install_access_log_redactor
from api.app import create_app
from config.settings import Settings


async def run_api(settings: Settings) -> None:
    # File URLs carry their bearer token in the path (chargers send no headers): redacted.
    install_access_log_redactor()
    config = uvicorn.Config(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.log_level.lower(),
        # uvicorn's own loggers propagate to the root handler: structured like every line.
        log_config=None,
        # Secrets travel in headers; the access log prints method, path (file tokens and query
        # values redacted: api/access_log.py) and status.
        access_log=True,
        # The client address is derived in one place (api/client_address.py) from the socket
        # peer and POLARIS_API_TRUSTED_PROXIES; uvicorn must not rewrite it first.
        proxy_headers=False,
    )
    await uvicorn.Server(config).serve()


if __name__ == "__main__":
    import sys

    from cli.main import main as polaris

    # The same start-up checks as `polaris api` (config/startup.py).
    sys.exit(polaris(["api"]))
