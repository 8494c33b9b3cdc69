"""``polaris steve sync | runs [--json] | retry RUN_ID | cadence [--json]``: SteVe sync runs
and Adaptive Cadence (``services/steve.py``, docs/steve.md)."""

from __future__ import annotations

import argparse
from typing import Any

from cli.output import emit_json, emit_table, fail
from cli.service_context import open_service_context
from config.settings import Settings
from services import steve
from services.actor import Actor
from services.errors import ServiceError


def add_steve_commands(sub: Any) -> None:
    group = sub.add_parser("steve", help="SteVe sync runs and Adaptive Cadence")
    steve_sub = group.add_subparsers(dest="steve_command", required=True)
    sync = steve_sub.add_parser("sync", help="start a sync run now (and return to Active)")
    sync.add_argument("--json", action="store_true")
    runs = steve_sub.add_parser("runs", help="the latest sync runs, newest first")
    runs.add_argument("--limit", type=int, default=20)
    runs.add_argument("--json", action="store_true")
    retry = steve_sub.add_parser("retry", help="run a failed sync run again (a new run)")
    retry.add_argument("run_id", type=int)
    retry.add_argument("--json", action="store_true")
    cadence = steve_sub.add_parser("cadence", help="Adaptive Cadence: mode, interval, next run")
    cadence.add_argument("--json", action="store_true")


async def run_steve_command(settings: Settings, args: argparse.Namespace) -> int:
    actor = Actor.cli()
    try:
        async with open_service_context(settings) as ctx:
            if args.steve_command == "sync":
                result: Any = await steve.trigger_sync(ctx, actor)
            elif args.steve_command == "runs":
                result = await steve.list_runs(ctx, actor, limit=args.limit)
            elif args.steve_command == "retry":
                result = await steve.retry_run(ctx, actor, args.run_id)
            else:
                result = await steve.cadence(ctx, actor)
    except ServiceError as exc:
        return fail(exc, as_json=args.json)
    if args.json:
        emit_json(result)
        return 0
    if args.steve_command in ("sync", "retry"):
        how = "started" if result["started"] else "already started (same trigger window)"
        print(f"sync run {result['workflow_id']}: {how}")
    elif args.steve_command == "runs":
        emit_table(
            [
                {
                    **r,
                    "changes": sum(int(e.get("changes") or 0) for e in r["log"]),
                    "errors": len(r["errors"]),
                }
                for r in result
            ],
            ["id", "trigger", "status", "started_at", "finished_at", "changes", "errors"],
        )
    else:
        print_cadence(result)
    return 0


def print_cadence(c: dict[str, Any]) -> None:
    if not c["running"]:
        state = "configured" if c["configured"] else "not configured (POLARIS_STEVE_API_URL)"
        print(f"cadence not running; SteVe {state}")
        return
    print(f"mode            {c['mode']} (every {c['interval_s']} s)")
    print(f"idle streak     {c['idle_streak']}")
    print(f"last activity   {c['last_activity_at']}")
    print(f"next run        {c['next_run_at']}")
    print(f"runs            {c['runs']} (last {c['last_run_id']}: {c['last_run_status']})")
