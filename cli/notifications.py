"""``polaris notifications list|read|archive``: the operators' inbox from the command line
(``services/notifications.py``; docs/notifications.md).

The CLI is an operator (``Actor.cli()``); its read and archive marks are its own, kept under the
CLI actor's id (``cli:<os user>``), like any other operator's.
"""

from __future__ import annotations

import argparse
from typing import Any

from cli.output import emit, emit_json, fail
from cli.service_context import open_service_context
from config.settings import Settings
from services import notifications
from services.actor import Actor
from services.errors import InvalidInput, ServiceError
from services.notifications import Inbox

COLUMNS = ["id", "created_at", "kind", "title", "read_at"]


def add_notifications_commands(sub: Any) -> None:
    parser = sub.add_parser("notifications", help="the operators' inbox")
    commands = parser.add_subparsers(dest="notifications_command", required=True)
    listing = commands.add_parser("list", help="newest first (archived ones left out)")
    listing.add_argument("--unread", action="store_true", help="only unread ones")
    listing.add_argument("--archived", action="store_true", help="the archive instead")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (1-200)")
    listing.add_argument("--json", action="store_true")
    read = commands.add_parser("read", help="mark one notification read (or --all)")
    read.add_argument("notification_id", nargs="?", type=int)
    read.add_argument("--all", action="store_true", help="every unread notification")
    read.add_argument("--json", action="store_true")
    archive = commands.add_parser("archive", help="move one notification to the archive")
    archive.add_argument("notification_id", type=int)
    archive.add_argument("--json", action="store_true")


async def run_notifications_command(settings: Settings, args: argparse.Namespace) -> int:
    inbox = Inbox.of_operator(Actor.cli().id)
    try:
        async with open_service_context(settings) as ctx:
            if args.notifications_command == "list":
                if not 1 <= args.limit <= notifications.MAX_PAGE:
                    raise InvalidInput(
                        "--limit must be between 1 and 200",
                        issues=[{"path": ["limit"], "message": "between 1 and 200"}],
                    )
                page = await notifications.list_notifications(
                    ctx,
                    inbox,
                    unread=True if args.unread else None,
                    archived=args.archived,
                    limit=args.limit,
                )
                emit(page["notifications"], as_json=args.json, columns=COLUMNS)
                return 0
            if args.notifications_command == "read" and args.all:
                count = await notifications.mark_all_read(ctx, inbox)
                result: dict[str, Any] = {"marked_read": count}
            elif args.notifications_command == "read":
                if args.notification_id is None:
                    raise InvalidInput("name a notification id, or --all")
                result = await notifications.mark_read(ctx, inbox, args.notification_id)
            else:
                result = await notifications.archive(ctx, inbox, args.notification_id)
    except ServiceError as exc:
        return fail(exc, as_json=args.json)
    if args.json:
        emit_json(result)
    else:
        emit(result, as_json=False)
    return 0


__all__ = ["add_notifications_commands", "run_notifications_command"]
