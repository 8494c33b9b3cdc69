"""The ``polaris`` command.

Every subcommand builds settings once (environment, then ``.polaris/runtime.json`` written by a
running ``polaris dev``) and passes them down. Before any command runs, ``config/startup.py``
decides whether it may start with those settings (no environment, or a development secret outside
a dev stack: refused, exit 2).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Coroutine, Sequence
from typing import Any, NoReturn

from pydantic import ValidationError

from config.settings import Settings, load_settings
from config.startup import DEV_COMMAND, startup_refusal


def _configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stdout,
    )


def _cmd_dev(settings: Settings, _: argparse.Namespace) -> int:
    from cli.dev import run_dev

    if settings.env == "dev":
        settings = settings.model_copy(update={"gateway_auto_register": True})
    return asyncio.run(run_dev(settings))


def _cmd_api(settings: Settings, _: argparse.Namespace) -> int:
    from api.main import run_api

    asyncio.run(run_api(settings))
    return 0


def _cmd_gateway(settings: Settings, _: argparse.Namespace) -> int:
    from gateway.main import run_gateway

    return _run_until_signal(run_gateway(settings))


def _cmd_worker(settings: Settings, _: argparse.Namespace) -> int:
    from worker import run_worker

    return _run_until_signal(run_worker(settings))


def _cmd_auth(settings: Settings, _: argparse.Namespace) -> int:
    from cli import auth_service

    auth_service.ensure_installed()
    env = auth_service.settings_environment(settings, database_url=settings.require_database_url())
    argv = auth_service.command()
    os.execvpe(argv[0], argv, env)


def _cmd_migrate(settings: Settings, _: argparse.Namespace) -> int:
    from db.migrate import upgrade

    upgrade(settings.require_database_url())
    print("migrations applied")
    return 0


def _cmd_seed(settings: Settings, args: argparse.Namespace) -> int:
    from cli.seed import seed_demo

    return asyncio.run(seed_demo(settings))


def _cmd_sessions(settings: Settings, args: argparse.Namespace) -> int:
    from cli.sessions import run_sessions_command

    return asyncio.run(run_sessions_command(settings, args))


def _cmd_scan(settings: Settings, args: argparse.Namespace) -> int:
    from cli.scan import run_scan_command

    return asyncio.run(run_scan_command(settings, args))


def _cmd_firmware(settings: Settings, args: argparse.Namespace) -> int:
    from cli.firmware import run_firmware_command

    return asyncio.run(run_firmware_command(settings, args))


def _cmd_diagnostics(settings: Settings, args: argparse.Namespace) -> int:
    from cli.firmware import run_diagnostics_command

    return asyncio.run(run_diagnostics_command(settings, args))


def _run_until_signal(coro: Coroutine[Any, Any, None]) -> int:
    """Run a coroutine; SIGTERM/SIGINT cancel it so it can shut down gracefully."""

    async def runner() -> None:
        task = asyncio.create_task(coro)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(runner())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="polaris", description="Polaris Express EV charging")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("dev", help="run the whole platform on this machine (embedded defaults)")
    sub.add_parser("api", help="run the HTTP API")
    sub.add_parser("gateway", help="run the OCPP 1.6J gateway")
    sub.add_parser("worker", help="run a Temporal worker")
    sub.add_parser("auth", help="run the BetterAuth service (Node)")
    sub.add_parser("migrate", help="apply database migrations")
    seed = sub.add_parser("seed", help="load data")
    seed.add_argument("dataset", choices=["demo"])
    sessions = sub.add_parser("sessions", help="read charging sessions")
    sessions_sub = sessions.add_subparsers(dest="sessions_command", required=True)
    ls = sessions_sub.add_parser("list", help="list recent sessions")
    ls.add_argument("--limit", type=int, default=20)
    ls.add_argument("--json", action="store_true")
    start = sessions_sub.add_parser("start", help="start a session remotely")
    start.add_argument("--charger", required=True, help="chargeBoxId")
    start.add_argument("--id-tag", required=True, help="the card the session is charged to")
    start.add_argument("--connector", type=int, default=None, help="connector (default: any)")
    start.add_argument("--request-id", help="idempotency key: a retry with it starts nothing new")
    start.add_argument(
        "--wait-s",
        type=float,
        default=60.0,
        help="wait this long for the card check and the charger's answer (exit 1 if refused)",
    )
    stop = sessions_sub.add_parser("stop", help="stop a running session remotely")
    stop.add_argument("workflow_id")
    stop.add_argument("--reason", default=None)
    close = sessions_sub.add_parser(
        "close", help="force-close a running session without the charger (audited)"
    )
    close.add_argument("workflow_id")
    close.add_argument("--reason", required=True, help="why (kept in the audit log)")
    close.add_argument(
        "--energy-wh",
        type=int,
        default=None,
        help="bill this energy instead of the last register the charger reported",
    )
    show = sessions_sub.add_parser("show", help="show one session's story")
    show.add_argument("workflow_id")
    show.add_argument("--json", action="store_true")
    scan = sub.add_parser("scan", help="scan-to-login at chargers")
    scan_sub = scan.add_subparsers(dest="scan_command", required=True)
    rotate = scan_sub.add_parser(
        "rotate-secret", help="a new QR secret for a charger (shown once; old codes stop working)"
    )
    rotate.add_argument("charge_box_id", help="chargeBoxId")
    from cli.firmware_parser import add_parsers as add_firmware_parsers

    add_firmware_parsers(sub)
    return parser


COMMANDS = {
    "dev": _cmd_dev,
    "api": _cmd_api,
    "gateway": _cmd_gateway,
    "worker": _cmd_worker,
    "auth": _cmd_auth,
    "migrate": _cmd_migrate,
    "seed": _cmd_seed,
    "sessions": _cmd_sessions,
    "scan": _cmd_scan,
    "firmware": _cmd_firmware,
    "diagnostics": _cmd_diagnostics,
}


def _messages(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_input=False, include_url=False):
        name = f"POLARIS_{str(error['loc'][0]).upper()}: " if error["loc"] else ""
        parts.append(name + error["msg"].removeprefix("Value error, "))
    return "; ".join(parts)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """The console script: run the command, then leave without interpreter teardown.

    The Temporal client's Rust runtime keeps threads that can still hold the GIL while CPython
    finalizes, which aborts a short-lived command with "Fatal Python error: PyGILState_Release"
    after its work is done (temporalio/sdk-python#300). Every command has finished and stopped
    what it started by the time ``run`` returns, so the process flushes what it wrote and exits
    at once instead.
    """
    code = run(argv)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def run(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except ValidationError as exc:
        # Only the messages: pydantic's own text quotes the input, secrets included.
        print(f"polaris: invalid configuration: {_messages(exc)}", file=sys.stderr)
        return 2
    if args.command == DEV_COMMAND and settings.env is None:
        settings = settings.model_copy(update={"env": "dev"})
    refusal = startup_refusal(settings, args.command)
    if refusal is not None:
        print(f"polaris {args.command}: refusing to start: {refusal}", file=sys.stderr)
        return 2
    _configure_logging(settings)
    try:
        return COMMANDS[args.command](settings, args)
    except RuntimeError as exc:
        print(f"polaris: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    main()
