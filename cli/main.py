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
import traceback
from collections.abc import Coroutine, Sequence
from typing import Any, NoReturn

from pydantic import ValidationError

from cli.cards import add_cards_commands
from cli.chargers import add_chargers_commands
from cli.notifications import add_notifications_commands
from cli.operations import add_operation_commands, add_operations_log_commands
from cli.setup_commands import add_setup_commands
from cli.sites import add_sites_commands
from cli.steve import add_steve_commands
from cli.tariffs import add_tariffs_commands
from cli.webhooks import add_webhooks_commands
from config.settings import Settings, load_settings
from config.startup import DEV_COMMAND, startup_refusal

# The long-running processes: traced when tracing is on (observability/tracing.py).
TRACED_COMMANDS = {"api": "polaris-api", "gateway": "polaris-gateway", "worker": "polaris-worker"}


def _configure_logging(settings: Settings, command: str | None = None) -> None:
    """Structured logs (JSON, or human-readable under ``polaris dev``: observability/logs.py)."""
    from observability import logs, tracing

    logs.configure(settings, stream=sys.stdout)
    if command in TRACED_COMMANDS:
        tracing.configure(settings, TRACED_COMMANDS[command])


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


def _cmd_notifications(settings: Settings, args: argparse.Namespace) -> int:
    from cli.notifications import run_notifications_command

    return asyncio.run(run_notifications_command(settings, args))


def _cmd_steve(settings: Settings, args: argparse.Namespace) -> int:
    from cli.steve import run_steve_command

    return asyncio.run(run_steve_command(settings, args))


def _cmd_kpis(settings: Settings, args: argparse.Namespace) -> int:
    from cli.kpis import run_kpis_command

    return asyncio.run(run_kpis_command(settings, args))


def _cmd_scan(settings: Settings, args: argparse.Namespace) -> int:
    from cli.scan import run_scan_command

    return asyncio.run(run_scan_command(settings, args))


def _cmd_fleet(settings: Settings, args: argparse.Namespace) -> int:
    """``chargers``, ``sites``, ``tariffs``, ``cards``: each subcommand carries its own handler."""
    from cli.fleet_common import run_handler

    return run_handler(settings, args)


def _cmd_operations(settings: Settings, args: argparse.Namespace) -> int:
    from cli.operations import run_subcommand

    return run_subcommand(settings, args)


def _cmd_local_list(settings: Settings, args: argparse.Namespace) -> int:
    from cli.local_lists import run_local_list_command

    return asyncio.run(run_local_list_command(settings, args))


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
    ls = sessions_sub.add_parser("list", help="list sessions, newest start first")
    ls.add_argument("--charger", help="chargeBoxId")
    ls.add_argument("--card", help="idTag")
    ls.add_argument("--user", help="user id (the card's owner when the session started)")
    ls.add_argument("--state", help="a state, or several: charging,suspended")
    ls.add_argument(
        "--from", dest="started_from", help="started at or after (2026-03-01 or ISO time)"
    )
    ls.add_argument("--to", dest="started_to", help="started before (2026-03-02 or ISO time)")
    ls.add_argument("--limit", type=int, default=20)
    ls.add_argument("--offset", type=int, default=0)
    ls.add_argument("--cursor", help="continue after the page that printed this cursor")
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
    show.add_argument("session_id", help="workflow id or transaction id")
    show.add_argument("--json", action="store_true")
    timeline = sessions_sub.add_parser(
        "timeline", help="a session's workflow history: signals, activities, timers, states"
    )
    timeline.add_argument("session_id", help="workflow id or transaction id")
    timeline.add_argument("--kind", help="only these entry kinds: state,activity,signal,…")
    timeline.add_argument("--json", action="store_true")
    kpis = sub.add_parser("kpis", help="the network at a glance (energy, sessions, chargers)")
    kpis.add_argument("--tz", help="IANA time zone for today/this month (default: the operator's)")
    kpis.add_argument("--json", action="store_true")
    add_notifications_commands(sub)
    add_steve_commands(sub)
    scan = sub.add_parser("scan", help="scan-to-login at chargers")
    scan_sub = scan.add_subparsers(dest="scan_command", required=True)
    rotate = scan_sub.add_parser(
        "rotate-secret", help="a new QR secret for a charger (shown once; old codes stop working)"
    )
    rotate.add_argument("charge_box_id", help="chargeBoxId")
    chargers_sub = add_chargers_commands(sub)
    # Other capabilities' `chargers` subcommands join the same group (each with its own runner,
    # see cli/fleet_common.run_handler).
    add_operation_commands(chargers_sub)
    add_operations_log_commands(sub)
    add_sites_commands(sub)
    add_setup_commands(sub)
    add_tariffs_commands(sub)
    add_cards_commands(sub)
    add_webhooks_commands(sub)
    local_list = sub.add_parser("local-list", help="chargers' local authorization lists")
    local_list_sub = local_list.add_subparsers(dest="local_list_command", required=True)
    ll_show = local_list_sub.add_parser("show", help="a charger's acknowledged list and sync")
    ll_show.add_argument("charge_box_id", help="chargeBoxId")
    ll_show.add_argument("--json", action="store_true")
    ll_sync = local_list_sub.add_parser("sync", help="force a Full update of one charger or all")
    ll_sync.add_argument("charge_box_id", nargs="?", help="chargeBoxId (or --all)")
    ll_sync.add_argument("--all", action="store_true", help="every charger")
    ll_sync.add_argument(
        "--wait-s",
        type=float,
        default=60.0,
        help="one charger: wait this long for the round to finish (0: do not wait)",
    )
    ll_sync.add_argument("--json", action="store_true")
    from cli.reservations import add_reservation_commands

    add_reservation_commands(sub)
    codec = sub.add_parser("codec", help="the payload codec's keys (POLARIS_PAYLOAD_KEYS)")
    codec_sub = codec.add_subparsers(dest="codec_command", required=True)
    new_key = codec_sub.add_parser(
        "new-key", help="print a fresh id:key entry (put it first in POLARIS_PAYLOAD_KEYS)"
    )
    new_key.add_argument("key_id", help="a name for the key, e.g. 2026-11")
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
    "chargers": _cmd_fleet,
    "sites": _cmd_fleet,
    "tariffs": _cmd_fleet,
    "cards": _cmd_fleet,
    "webhooks": _cmd_fleet,
    "admin": _cmd_fleet,
    "billing": _cmd_fleet,
    "operations": _cmd_operations,
    "kpis": _cmd_kpis,
    "steve": _cmd_steve,
    "notifications": _cmd_notifications,
    "local-list": _cmd_local_list,
    "firmware": _cmd_firmware,
    "diagnostics": _cmd_diagnostics,
    "reservations": _cmd_fleet,
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
    (or a segmentation fault) after its work is done: temporalio/sdk-python#300, open; the SDK
    has no way to shut its runtime down. Every command has finished and stopped what it started
    by the time ``run`` returns, so the process flushes what it wrote and exits at once with the
    command's status instead. An exception that escapes a command (a bug) is printed and exits 1
    the same way, and ``SystemExit`` (argparse's usage errors) keeps its code: no path out of
    ``polaris`` goes through the teardown. ``tests/e2e/test_clean_exits.py`` runs every command
    that uses the client repeatedly and checks its exit status.
    """
    code = _exit_code(argv)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def _exit_code(argv: Sequence[str] | None) -> int:
    try:
        return run(argv)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BaseException:
        traceback.print_exc()
        return 1


def _cmd_codec(args: argparse.Namespace) -> int:
    """Needs no settings: the key is made before the configuration that will hold it."""
    from config.payload_codec import new_key_entry

    try:
        print(new_key_entry(args.key_id))
    except ValueError as exc:
        print(f"polaris codec: {exc}", file=sys.stderr)
        return 1
    return 0


def run(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "codec":
        return _cmd_codec(args)
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
    _configure_logging(settings, args.command)
    try:
        return COMMANDS[args.command](settings, args)
    except RuntimeError as exc:
        print(f"polaris: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    main()
