"""``polaris admin create`` and ``polaris billing plan``: what an empty installation needs before
its first charger (see docs/operators.md). Thin over :mod:`services.admins` and
:mod:`services.billing_plan`."""

from __future__ import annotations

import argparse
import os
from typing import Any

from cli.fleet_common import with_json
from cli.output import emit
from services import admins, billing_plan, billing_unsent
from services.actor import Actor
from services.context import ServiceContext


async def _admin_create(ctx: ServiceContext, actor: Actor, args: argparse.Namespace) -> int:
    # The password from the environment, never from argv (argv is visible to every local user).
    password = os.environ.get("POLARIS_ADMIN_PASSWORD") or None
    result = await admins.create_admin(ctx, actor, args.email, name=args.name, password=password)
    if args.json:
        emit(result, as_json=True)
    elif result["created"]:
        shown = result.get("password")
        print(f"admin {result['email']} created (user id {result['user_id']})")
        if shown:
            print(f"password: {shown}  (shown once; keep it)")
        else:
            print("password: the one in POLARIS_ADMIN_PASSWORD")
    elif result["promoted"]:
        print(f"{result['email']} already existed: now an admin (password unchanged)")
    else:
        print(f"{result['email']} is already an admin (password unchanged)")
    return 0


async def _billing_plan(ctx: ServiceContext, actor: Actor, args: argparse.Namespace) -> int:
    result = await billing_plan.ensure_billing_plan(
        ctx, actor, price_per_kwh=args.price_per_kwh, currency=args.currency, name=args.name
    )
    emit(result, as_json=args.json)
    return 0


async def _unsent_list(ctx: ServiceContext, actor: Actor, args: argparse.Namespace) -> int:
    rows = await billing_unsent.list_unsent(ctx, actor, session=args.session)
    columns = ["session", "sequence", "kind", "energy_wh", "amount_minor", "currency", "customer"]
    columns.append("last_error")
    emit(rows, as_json=args.json, columns=columns)
    return 0


async def _unsent_resend(ctx: ServiceContext, actor: Actor, args: argparse.Namespace) -> int:
    result = await billing_unsent.resend_unsent(ctx, actor, session=args.session)
    if args.json:
        emit(result, as_json=True)
    else:
        emit(
            result["sessions"],
            as_json=False,
            columns=["session", "kind", "ok", "sent", "left", "error"],
        )
    # Exit 1 when a session's lines are still refused (scripts and alerts can tell).
    return 0 if all(s["ok"] for s in result["sessions"]) else 1


def add_setup_commands(sub: Any) -> None:
    admin = sub.add_parser("admin", help="the installation's admin accounts")
    admin_sub = admin.add_subparsers(dest="admin_command", required=True)
    create = with_json(
        admin_sub.add_parser(
            "create",
            help="create an admin (password from POLARIS_ADMIN_PASSWORD, or generated and "
            "printed once), or make an existing account an admin",
        )
    )
    create.add_argument("email")
    create.add_argument("--name", default="Administrator")
    create.set_defaults(handler=_admin_create)

    billing = sub.add_parser("billing", help="the Lago side of the installation")
    billing_sub = billing.add_subparsers(dest="billing_command", required=True)
    plan = with_json(
        billing_sub.add_parser(
            "plan",
            help="create the billable metric and the plan POLARIS_LAGO_PLAN_CODE (a price per "
            "kWh) in Lago unless they exist; an existing plan is left as it is",
        )
    )
    plan.add_argument("--price-per-kwh", required=True, help="decimal amount, e.g. 0.30")
    plan.add_argument("--currency", default="EUR")
    plan.add_argument("--name", default="EV charging")
    plan.set_defaults(handler=_billing_plan)
    unsent = billing_sub.add_parser(
        "unsent",
        help="usage lines and idle fees Lago refused for good: list them, send them again",
    )
    unsent_sub = unsent.add_subparsers(dest="unsent_command", required=True)
    for name, handler, text in (
        ("list", _unsent_list, "list unsent lines (of one session with --session)"),
        ("resend", _unsent_resend, "send unsent lines again (Lago deduplicates: never twice)"),
    ):
        command = with_json(unsent_sub.add_parser(name, help=text))
        command.add_argument("--session", help="the session's workflow id")
        command.set_defaults(handler=handler)


__all__ = ["add_setup_commands"]
