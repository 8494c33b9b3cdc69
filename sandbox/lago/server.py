"""Run the sandbox under uvicorn: ``serve(config, host, port)`` and the command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import uvicorn

from sandbox.lago.app import create_app
from sandbox.lago.config import SandboxConfig

DEFAULT_PORT = 3100


def make_server(
    config: SandboxConfig, host: str, port: int, log_level: str = "info"
) -> uvicorn.Server:
    app = create_app(config)
    uv_config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        lifespan="on",
        ws="none",
        access_log=False,
    )
    return uvicorn.Server(uv_config)


async def serve(config: SandboxConfig, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
    """Serve until cancelled (the ``polaris dev`` supervisor runs this as a task)."""
    server = make_server(config, host, port)
    try:
        await server.serve()
    except asyncio.CancelledError:
        server.should_exit = True
        raise


def parse_args(argv: Sequence[str] | None = None) -> tuple[SandboxConfig, str, int]:
    env = os.environ
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.lago", description="Lago-compatible billing sandbox"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--port", type=int, default=int(env.get("POLARIS_SANDBOX_PORT", DEFAULT_PORT))
    )
    parser.add_argument("--api-key", default=None, help="default: $POLARIS_LAGO_API_KEY")
    parser.add_argument("--state-file", type=Path, default=None)
    parser.add_argument("--webhook-url", default=None, help="default: $POLARIS_LAGO_WEBHOOK_URL")
    parser.add_argument(
        "--webhook-secret", default=None, help="default: $POLARIS_LAGO_WEBHOOK_SECRET"
    )
    parser.add_argument(
        "--admin",
        action="store_true",
        default=None,
        help="enable /__sandbox (faults, state, reset); default: $POLARIS_SANDBOX_ADMIN",
    )
    parser.add_argument(
        "--lenient-contract",
        action="store_true",
        help="log responses that do not match the OpenAPI document instead of answering 500",
    )
    args = parser.parse_args(argv)
    config = SandboxConfig.from_env(
        api_key=args.api_key,
        state_file=args.state_file,
        webhook_url=args.webhook_url,
        webhook_secret=args.webhook_secret,
        admin_enabled=args.admin,
    )
    if args.lenient_contract:
        config.strict_contract = False
    if not config.api_key:
        parser.error("an API key is required (--api-key or POLARIS_LAGO_API_KEY)")
    return config, args.host, args.port


def main(argv: Sequence[str] | None = None) -> None:
    config, host, port = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("sandbox.lago").info(
        "Lago sandbox on http://%s:%d/api/v1 (webhooks: %s, state: %s)",
        host,
        port,
        config.webhook_url or "off",
        config.state_file or "memory",
    )
    asyncio.run(serve(config, host, port))
