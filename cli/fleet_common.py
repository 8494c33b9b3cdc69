"""What the fleet commands (``chargers``, ``sites``, ``tariffs``) share.

Each subcommand sets a ``handler(ctx, actor, args) -> exit code`` coroutine with
``set_defaults``; :func:`run_handler` runs it with a service context and turns service errors
into exit codes."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from cli.output import fail
from cli.service_context import open_service_context
from config.settings import Settings
from services.actor import Actor
from services.context import ServiceContext
from services.errors import ServiceError

Handler = Callable[[ServiceContext, Actor, argparse.Namespace], Awaitable[int]]


def run_handler(settings: Settings, args: argparse.Namespace) -> int:
    if not hasattr(args, "handler"):
        # A subcommand another capability added to the group with its own runner
        # (``set_defaults(run=coroutine(settings, args))``, as ``chargers op`` does).
        code: int = asyncio.run(args.run(settings, args))
        return code
    handler: Handler = args.handler

    async def main() -> int:
        async with open_service_context(settings) as ctx:
            try:
                return await handler(ctx, Actor.cli(), args)
            except ServiceError as exc:
                return fail(exc, as_json=getattr(args, "json", False))

    return asyncio.run(main())


def with_json(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    return parser


def optional(value: str) -> str | None:
    """``""`` clears an optional reference (``--site ""``)."""
    return value or None


def given(
    args: argparse.Namespace, names: dict[str, str], *, clearing: bool = False
) -> dict[str, Any]:
    """The fields the operator gave: ``{field: value}`` for each ``--flag`` given. Options of
    ``set`` commands (``clearing=True``) default to ``argparse.SUPPRESS``, so a left-out flag is
    absent while a cleared one (``--site ""``) is present as None; elsewhere None is left out."""
    present = {dest: getattr(args, dest) for dest in names if hasattr(args, dest)}
    return {names[dest]: value for dest, value in present.items() if clearing or value is not None}


def change_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """A ``set`` command: options left out leave no attribute (see :func:`given`)."""
    parser.argument_default = argparse.SUPPRESS
    return parser


def yes_no(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("true", "yes", "on", "1"):
        return True
    if lowered in ("false", "no", "off", "0"):
        return False
    raise argparse.ArgumentTypeError("expected true or false")
