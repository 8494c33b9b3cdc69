"""``polaris chargers op|config`` and ``polaris operations list|show``: remote operations from
the command line, thin over ``services/operations.py`` (see docs/operations.md).

``polaris chargers op ID ACTION [field=value …]`` names fields as OCPP does (``type=Soft``,
``key=HeartbeatInterval value=60``, ``connectorId=1``); the OCPP schema gives each its type, and
objects or lists take JSON or ``@file.json``. The exit code says how it went: 0 the charger
accepted (answered), 1 it refused, failed or did not answer in time, 2 the request is not valid
(nothing sent), 3 the charger is offline (nothing sent), 4 unknown charger or action, 6 the
allow-list refuses it.

The CLI acts as an admin (``cli:<os user>``): it runs on the platform's hosts with its database
credentials.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from config.settings import Settings

OP_COLUMNS = ("id", "created_at", "charge_box_id", "action", "status", "requested_by", "error")
# Exit codes of `chargers op` by the operation's final status (errors: cli/output.py).
STATUS_EXIT = {"answered": 0, "charger_offline": 3}


def add_operation_commands(chargers_sub: Any) -> None:
    """``op`` and ``config`` under ``polaris chargers`` (the parser's subparsers object)."""
    op = chargers_sub.add_parser(
        "op",
        help="send an OCPP operation to a charger (e.g. Reset type=Soft)",
        description="Fields are named as in OCPP 1.6: type=Soft, key=HeartbeatInterval value=60, "
        "connectorId=1 (translated for a charger on OCPP 2.0.1); the 2.0.1-only operations "
        "(GetVariables, SetVariables, GetBaseReport, GetTransactionStatus, "
        "RequestStart/StopTransaction) take 2.0.1 fields; objects and lists as JSON or @file.json.",
    )
    op.add_argument("charge_box_id", help="chargeBoxId")
    op.add_argument("action", help="the OCPP action, e.g. Reset, GetConfiguration, TriggerMessage")
    op.add_argument("fields", nargs="*", metavar="field=value")
    op.add_argument(
        "--dry-run", action="store_true", help="print the frame that would be sent; send nothing"
    )
    op.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the answer")
    op.add_argument("--json", action="store_true")
    op.set_defaults(run=_run_op)
    config = chargers_sub.add_parser(
        "config", help="the charger's last GetConfiguration answer and what changed"
    )
    config.add_argument("charge_box_id", help="chargeBoxId")
    config.add_argument("--json", action="store_true")
    config.set_defaults(run=_run_config)


def add_operations_log_commands(sub: Any) -> None:
    """``polaris operations list|show`` (the top-level subparsers object)."""
    ops = sub.add_parser("operations", help="the log of operations sent to chargers")
    ops_sub = ops.add_subparsers(dest="operations_command", required=True)
    ls = ops_sub.add_parser("list", help="operations, newest first")
    ls.add_argument("--charger", default=None, help="only this chargeBoxId")
    ls.add_argument("--status", default=None, help="requested, sent, answered, rejected, …")
    ls.add_argument("--action", default=None, help="only this OCPP action")
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(run=_run_list)
    show = ops_sub.add_parser("show", help="one operation: request, status, the charger's answer")
    show.add_argument("operation_id")
    show.add_argument("--json", action="store_true")
    show.set_defaults(run=_run_show)


def run_subcommand(settings: Settings, args: argparse.Namespace) -> int:
    code: int = asyncio.run(args.run(settings, args))
    return code


def _read_file(path: str) -> str:
    return Path(path).expanduser().read_text()


async def _run_op(settings: Settings, args: argparse.Namespace) -> int:
    from cli.output import emit, fail
    from cli.service_context import open_service_context
    from domain.operations import OCPP201_ONLY_ACTIONS, FieldParseError, parse_fields
    from gateway import ocpp16_operations as ocpp16
    from gateway import ocpp201_operations as ocpp201
    from services import operations
    from services.actor import Actor
    from services.errors import InvalidInput, NotFound, ServiceError

    try:
        try:
            if args.action in OCPP201_ONLY_ACTIONS:  # GetVariables, SetVariables, …
                schema = ocpp201.request_schema(args.action)
            else:
                schema = ocpp16.request_schema(args.action)
        except ocpp16.UnknownAction as exc:
            raise NotFound(
                f"{exc}, or an OCPP 2.0.1 one: {', '.join(OCPP201_ONLY_ACTIONS)}"
            ) from None
        try:
            fields = parse_fields(args.fields, schema, read_file=_read_file)
        except FieldParseError as exc:
            raise InvalidInput(
                "the fields cannot be read; nothing was sent", issues=exc.issues
            ) from None
        async with open_service_context(settings) as ctx:
            result = await operations.request_operation(
                ctx,
                Actor.cli(),
                args.charge_box_id,
                args.action,
                fields,
                dry_run=args.dry_run,
                timeout_s=args.timeout,
            )
    except ServiceError as exc:
        return fail(exc, as_json=args.json)
    emit(result, as_json=args.json)
    if result.get("dry_run"):
        return 0
    return STATUS_EXIT.get(str(result["status"]), 1)


async def _run_config(settings: Settings, args: argparse.Namespace) -> int:
    from cli.output import emit, emit_table, fail
    from cli.service_context import open_service_context
    from services import operations
    from services.errors import ServiceError

    try:
        async with open_service_context(settings) as ctx:
            config = await operations.charger_configuration(ctx, args.charge_box_id)
    except ServiceError as exc:
        return fail(exc, as_json=args.json)
    if args.json:
        emit(config, as_json=True)
        return 0
    if config["read_at"] is None:
        print(f"{args.charge_box_id}: no configuration read yet; try: {config['hint']}")
        return 0
    print(f"{args.charge_box_id}: configuration read at {config['read_at']}")
    emit_table(config["keys"], ("key", "value", "readonly"))
    if config["changes"]:
        print(f"\nchanged since {config['previous_read_at']}:")
        emit_table(config["changes"], ("key", "change", "before", "after"))
    return 0


async def _run_list(settings: Settings, args: argparse.Namespace) -> int:
    from cli.output import emit, fail
    from cli.service_context import open_service_context
    from services import operations
    from services.errors import ServiceError

    try:
        async with open_service_context(settings) as ctx:
            rows = await operations.list_operations(
                ctx,
                charge_box_id=args.charger,
                status=args.status,
                action=args.action,
                limit=args.limit,
            )
    except ServiceError as exc:
        return fail(exc, as_json=args.json)
    emit(rows, as_json=args.json, columns=OP_COLUMNS)
    return 0


async def _run_show(settings: Settings, args: argparse.Namespace) -> int:
    from cli.output import emit, fail
    from cli.service_context import open_service_context
    from services import operations
    from services.errors import ServiceError

    try:
        async with open_service_context(settings) as ctx:
            row = await operations.get_operation(ctx, args.operation_id)
    except ServiceError as exc:
        return fail(exc, as_json=args.json)
    emit(row, as_json=args.json)
    return 0
