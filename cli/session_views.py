"""``polaris sessions list`` with filters and ``polaris sessions timeline``'s text form (the
read-side commands over ``services/operator_views.py``; ``cli/sessions.py`` dispatches)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from services import operator_views
from services.actor import Actor
from services.context import ServiceContext


async def list_command(ctx: ServiceContext, args: argparse.Namespace) -> int:
    query = operator_views.parse_session_query(
        ctx.settings,
        charger=args.charger,
        card=args.card,
        user=args.user,
        state=args.state,
        started_from=args.started_from,
        started_to=args.started_to,
        limit=args.limit,
        offset=args.offset,
        cursor=args.cursor,
    )
    page = await operator_views.list_sessions(ctx, Actor.cli(), query)
    from cli.sessions import _print_table, _session_dict

    rows = [_session_dict(r) for r in page.rows]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _print_table(rows)
    if page.next_cursor:
        print(f"more: --cursor {page.next_cursor}", file=sys.stderr)
    return 0


def print_timeline(timeline: dict[str, Any]) -> None:
    print(f"session   {timeline['workflow_id']} ({timeline['state']})")
    for run in timeline["runs"]:
        print(f"run       {run['run_id']}" + (f"  {run['ui']}" if run["ui"] else ""))
    for e in timeline["entries"]:
        parts = [e["at"], f"{e['kind']:<8}", e["name"], e["status"]]
        if e["attempt"] and e["attempt"] > 1:
            parts.append(f"attempt {e['attempt']}")
        if e["duration_s"] is not None:
            parts.append(f"{e['duration_s']}s")
        if e["kind"] == "state":
            parts.append(f"(from {e['summary']['from'] or '-'})")
        if e["message"]:
            parts.append(f"— {e['message']}")
        print("  ".join(parts))
