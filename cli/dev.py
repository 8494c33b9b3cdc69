"""``polaris dev``: the whole platform on one machine, no Docker.

Order: embedded PostgreSQL → migrations → Temporal dev server (SQLite file, web UI) → billing
sandbox → auth → worker → gateway → API. Any dependency given by URL replaces its embedded one.
The addresses chosen are written to ``<data_dir>/runtime.json`` so other ``polaris`` commands
find the stack by themselves; the file is removed on a clean stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable

import httpx

from cli import auth_service
from cli.embedded_postgres import EmbeddedPostgres, port_is_open
from cli.embedded_temporal import dev_server_command
from cli.supervisor import ChildSpec, Supervisor
from config.settings import AUTH_CALLERS, RUNTIME_FILE, AuthCaller, Settings, write_runtime
from db.migrate import upgrade

READY_TIMEOUT_S = 120.0

# Only the auth service needs these: no other child inherits them from this shell.
AUTH_ONLY_SECRETS = frozenset(
    {
        "POLARIS_AUTH_SECRET",
        "POLARIS_AUTH_INTERNAL_TOKEN",
        *(f"POLARIS_AUTH_INTERNAL_TOKEN_{caller.upper()}" for caller in AUTH_CALLERS),
    }
)


def polaris_child(
    settings: Settings,
    name: str,
    env: dict[str, str],
    *,
    caller: AuthCaller | None,
    ready: Callable[[], Awaitable[None]] | None = None,
) -> ChildSpec:
    """A ``polaris <name>`` child with only the secrets it needs: its own internal token when it
    calls the auth service's internal API (``caller``), never the auth secret."""
    own = dict(env)
    token = settings.accepted_internal_token(caller) if caller else None
    if token is not None:
        own["POLARIS_AUTH_INTERNAL_TOKEN"] = token
    remove = AUTH_ONLY_SECRETS - set(own)
    return ChildSpec(name, _polaris(name), env=own, env_remove=remove, ready=ready)


def wait_for_port(port: int, host: str = "127.0.0.1") -> Callable[[], Awaitable[None]]:
    async def ready() -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not port_is_open(host, port):
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port}")
            await asyncio.sleep(0.2)

    return ready


def wait_for_http(url: str) -> Callable[[], Awaitable[None]]:
    async def ready() -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(url)).status_code < 500:
                        return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{url} did not answer")
                await asyncio.sleep(0.3)

    return ready


def _polaris(*args: str) -> list[str]:
    return [sys.executable, "-m", "cli.main", *args]


async def run_dev(settings: Settings) -> int:
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    supervisor = Supervisor()
    say = supervisor.log
    rows: list[tuple[str, str, str]] = []
    embedded_pg: EmbeddedPostgres | None = None

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    try:
        # 1. PostgreSQL
        database_url = settings.database_url
        if database_url is None:
            embedded_pg = EmbeddedPostgres(data_dir, port=settings.embedded_pg_port)
            say("postgres", f"embedded PostgreSQL, data in {embedded_pg.pgdata}")
            await asyncio.to_thread(embedded_pg.start)
            database_url = embedded_pg.url()
            rows.append(("postgres", database_url, f"embedded, data {embedded_pg.pgdata}"))
        else:
            rows.append(("postgres", _redact(database_url), "external"))
        say("migrate", "applying migrations")
        await asyncio.to_thread(upgrade, database_url)

        # 2. Temporal
        temporal_address = settings.temporal_address
        if temporal_address is None:
            port, ui_port = settings.embedded_temporal_port, settings.embedded_temporal_ui_port
            temporal_address = f"127.0.0.1:{port}"
            await supervisor.start(
                ChildSpec(
                    "temporal",
                    dev_server_command(
                        port=port, ui_port=ui_port, db_file=data_dir / "temporal.db"
                    ),
                    ready=wait_for_port(port),
                )
            )
            rows.append(("temporal", temporal_address, f"dev server, {data_dir / 'temporal.db'}"))
            rows.append(("temporal-ui", f"http://127.0.0.1:{ui_port}", "workflow histories"))
        else:
            rows.append(("temporal", temporal_address, "external"))

        env = {
            "POLARIS_ENV": settings.require_env(),
            "POLARIS_DATA_DIR": str(data_dir),
            "POLARIS_DATABASE_URL": database_url,
            "POLARIS_TEMPORAL_ADDRESS": temporal_address,
            "POLARIS_AUTH_URL": settings.auth_base_url,
            "POLARIS_AUTH_INTERNAL_URL": settings.auth_internal_base_url,
            "POLARIS_LAGO_API_URL": settings.lago_base_url,
            "POLARIS_GATEWAY_AUTO_REGISTER": "true",
        }

        api_url = f"http://{settings.api_host}:{settings.api_port}"
        webhook_secret = settings.lago_webhook_secret.get_secret_value()

        # 3. Billing sandbox (a Lago stand-in) unless a real Lago is configured.
        if settings.lago_api_url is None:
            await supervisor.start(
                ChildSpec(
                    "billing",
                    [
                        sys.executable,
                        "-m",
                        "sandbox.lago",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(settings.sandbox_port),
                        "--state-file",
                        str(data_dir / "lago-sandbox.json"),
                    ],
                    env={
                        **env,
                        # Secrets travel in the environment, never on a command line.
                        "POLARIS_LAGO_API_KEY": settings.lago_api_key.get_secret_value(),
                        "POLARIS_LAGO_WEBHOOK_SECRET": webhook_secret,
                        "POLARIS_LAGO_WEBHOOK_URL": f"{api_url}/api/webhook/lago",
                    },
                    env_remove=AUTH_ONLY_SECRETS,
                    ready=wait_for_port(settings.sandbox_port),
                )
            )
            rows.append(
                ("billing", settings.lago_base_url, "Lago sandbox (no POLARIS_LAGO_API_URL set)")
            )
        else:
            rows.append(("billing", settings.lago_api_url, "Lago"))

        # 4. Auth (BetterAuth under Node)
        if settings.auth_url is None:
            await asyncio.to_thread(auth_service.ensure_installed)
            await supervisor.start(
                ChildSpec(
                    "auth",
                    auth_service.command(),
                    env=auth_service.settings_environment(settings, database_url=database_url),
                    ready=wait_for_http(f"{settings.auth_base_url}/healthz"),
                )
            )
            rows.append(("auth", settings.auth_base_url, "BetterAuth, JWKS at /api/auth/jwks"))
        else:
            rows.append(("auth", settings.auth_url, "external"))

        # env and pid mark a live stack: commands started beside it take its environment
        # (config/startup.py), and a file left by a crash marks nothing.
        write_runtime(
            data_dir,
            {
                "env": settings.require_env(),
                "pid": str(os.getpid()),
                "database_url": database_url,
                "temporal_address": temporal_address,
                "auth_url": settings.auth_base_url,
                "auth_internal_url": settings.auth_internal_base_url,
                "lago_api_url": settings.lago_base_url,
            },
        )

        # 5. Our own processes
        await supervisor.start(polaris_child(settings, "worker", env, caller="worker"))
        gw = f"ws://{settings.gateway_host}:{settings.gateway_port}/ocpp/{{chargeBoxId}}"
        await supervisor.start(
            polaris_child(
                settings,
                "gateway",
                env,
                caller=None,  # the gateway calls no internal endpoint
                ready=wait_for_port(settings.gateway_port, settings.gateway_host),
            )
        )
        rows.append(("gateway", gw, "OCPP 1.6J, subprotocol ocpp1.6"))
        await supervisor.start(
            polaris_child(
                settings, "api", env, caller="api", ready=wait_for_http(f"{api_url}/api/health")
            )
        )
        rows.append(("api", api_url, "health at /api/health, docs at /api/docs"))

        print(_table(rows), flush=True)
        print("Seed demo data from another terminal: polaris seed demo.  Ctrl-C stops.", flush=True)
        await stop.wait()
        return 0
    finally:
        say("dev", "stopping")
        await supervisor.stop()
        if embedded_pg is not None:
            await asyncio.to_thread(embedded_pg.stop)
            say("postgres", "stopped")
        with contextlib.suppress(FileNotFoundError):
            (data_dir / RUNTIME_FILE).unlink()


def _redact(url: str) -> str:
    """Hide a password in a URL before printing it."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at or ":" not in creds:
        return url
    return f"{scheme}{sep}{creds.split(':', 1)[0]}:***@{host}"


def _table(rows: list[tuple[str, str, str]]) -> str:
    widths = [max(len(r[i]) for r in [("service", "address", "notes"), *rows]) for i in range(3)]
    line = "+-" + "-+-".join("-" * w for w in widths) + "-+"
    fmt = "| " + " | ".join(f"{{:<{w}}}" for w in widths) + " |"
    body = [fmt.format(*r) for r in rows]
    return "\n".join([line, fmt.format("service", "address", "notes"), line, *body, line])
