"""``polaris chargers add|list|show|set|password|remove|pending``: the operator's chargers.

Thin over :mod:`services.chargers`. :func:`add_chargers_commands` builds the ``chargers`` group
and answers its subparsers, so other capabilities add their own ``chargers`` subcommands to the
same group (each sets ``handler`` with ``set_defaults``; see :mod:`cli.fleet_common`).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cli.fleet_common import change_parser, given, optional, with_json, yes_no
from cli.output import emit, emit_fields, emit_json, emit_table
from services import chargers
from services.actor import Actor
from services.context import ServiceContext
from services.validation import parse

LIST_COLUMNS = (
    "charge_box_id",
    "label",
    "site",
    "tariff",
    "connected",
    "ocpp_version",
    "gateway_instance",
    "last_seen_at",
    "auth",
    "vendor",
    "model",
    "firmware_version",
)


def _warn(text: str) -> None:
    print(f"WARNING: {text}", file=sys.stderr)


def _show(view: dict[str, Any]) -> None:
    connectors = view.get("connectors", [])
    lists = ("connectors", "authentication", "security_events", "events")
    fields = {k: v for k, v in view.items() if k not in lists}
    auth = view["authentication"]
    fields["authentication"] = auth["mode"] + (
        " (new password pending: the old one works until the charger uses the new one)"
        if auth["password_rotation_pending"]
        else ""
    )
    emit_fields(fields)
    if connectors:
        print("connectors:")
        for c in connectors:
            session = c["session"]
            running = (
                f"session {session['workflow_id']} (transaction {session['transaction_id']})"
                if session
                else "no session"
            )
            plug = c.get("connector_type") or "plug not set"
            power = f", {c['max_power_w']} W max" if c.get("max_power_w") else ""
            print(
                f"  {c['connector_id']}: {c['status']} {c['error_code']} "
                f"since {c['since'] or '-'}; {running} ({plug}{power})"
            )
    for title, key in (("security events", "security_events"), ("events", "events")):
        if view.get(key):
            print(f"{title} (newest first):")
            for e in view[key]:
                print(f"  {_event_line(e)}")
    if auth["warning"]:
        _warn(f"charger {view['charge_box_id']} {auth['warning']}")


def _event_line(event: dict[str, Any]) -> str:
    """One audited SecurityEventNotification / NotifyEvent of `chargers show`."""
    at = event.get("timestamp") or event.get("at")
    if str(event.get("action", "")).startswith("security_event."):
        words = [str(event.get("type")), str(event.get("tech_info") or "")]
    else:
        words = [
            f"{event.get('component')}.{event.get('variable')}",
            f"= {event.get('actual_value')}",
            f"({event.get('trigger')}, {event.get('notification_type')})",
            str(event.get("tech_info") or ""),
        ]
    return " ".join([str(at), *(w for w in words if w)])


async def _add(ctx: ServiceContext, actor: Actor, args: argparse.Namespace) -> int:
    new = parse(
        chargers.NewCharger,
        {
            "charge_box_id": args.charge_box_id,
            "connectors": args.connectors,
            **given(
                args,
                {
                    "site": "site",
                    "tariff": "tariff",
                    "max_power_w": "max_power_w",
                    "label": "label",
                },
            ),
        },
    )
    result = await chargers.add_charger(ctx, actor, new)
    if args.json:
        emit_json(result)
        return 0
    _show(result["charger"])
    print()
    print(f"password: {result['password']}")
    print(
        "  (shown once: configure it on the charger as its HTTP Basic password / "
        "AuthorizationKey; only its hash is kept)"
    )
    return 0


async def _list(ctx: ServiceContext, actor: Actor, args: argparse.Namespace) -> int:
    rows = await chargers.list_chargers(ctx, include_decommissioned=args.all)
    if args.json:
        emit_json(rows)
        return 0
    emit_table(
        [{**r, "auth": r["authentication"]["mode"]} for r in rows],
        (*LIST_COLUMNS, "decommissioned_at") if args.all else LIST_COLUMNS,
    )
    for r in rows:
        if r["authentication"]["warning"] and r["decommissioned_at"] is None:
            _warn(f"charger {r['charge_box_id']} {r['authentication']['warning']}")
    return 0


async def _show_cmd(ctx: ServiceContext, actor: Actor, args: argparse.Namespace) -> int:
    view = await chargers.show_charger(ctx, args.charge_box_id)
    if args.json:
        emit_json(view)
    else:
        _show(view)
    return 0


def _connector_changes(args: argparse.Namespace) -> list[dict[str, Any]]:
    """``--connector-type 1=CCS2 --connector-max-power-w 1=150000`` (each repeatable; an empty
    value clears) as the patch's per-connector changes."""
    changes: dict[str, dict[str, Any]] = {}
    for option, key in (
        ("connector_type", "connector_type"),
        ("connector_max_power_w", "max_power_w"),
    ):
        for item in getattr(args, option, None) or []:
            connector, _, value = item.partition("=")
            entry = changes.setdefault(connector.strip(), {"connector_id": connector.strip()})
            entry[key] = value.strip() or None
    return list(changes.values())


async def _set(ctx: ServiceContext, actor: Actor, args: argparse.Namespace) -> int:
    fields = given(
        args,
        {
            "site": "site",
            "tariff": "tariff",
            "max_power_w": "max_power_w",
            "allow_unauthenticated": "allow_unauthenticated",
            "label": "label",
            "free_vend": "free_vend",
            "registration_status": "registration_status",
        },
        clearing=True,
    )
    connectors = _connector_changes(args)
    if connectors:
        fields["connectors"] = connectors
    patch = parse(chargers.ChargerPatch, fields)
    result = await chargers.set_charger(ctx, actor, args.charge_box_id, patch)
    for warning in result["warnings"]:
        _warn(warning)
    if args.json:
        emit_json(result)
    else:
        _show(result["charger"])
    return 0


async def _password(ctx: ServiceContext, actor: Actor, args: argparse.Namespace) -> int:
    result = await chargers.rotate_password(ctx, actor, args.charge_box_id)
    if args.json:
        emit_json(result)
        return 0
    print(f"new password: {result['password']}")
    print(
        "  (shown once. The old password keeps working until the charger connects with this "
        "one; from then on only this one works)"
    )
    push = result["push"]
    if push.get("charger_status") == "Accepted":
        print(
            "sent to the charger (ChangeConfiguration AuthorizationKey), which accepted it: "
            "it reconnects with the new password"
        )
    else:
        detail = push.get("charger_status") or push.get("reason") or push["status"]
        print(f"not taken by the charger ({push['status']}: {detail}): set it on the charger")
    return 0


async def _remove(ctx: ServiceContext, actor: Actor, args: argparse.Namespace) -> int:
    view = await chargers.decommission_charger(ctx, actor, args.charge_box_id)
    if args.json:
        emit_json(view)
    else:
        print(
            f"charger {view['charge_box_id']} decommissioned at {view['decommissioned_at']}: "
            "the gateway refuses it; its history is kept (`chargers list --all`)"
        )
    return 0


async def _pending(ctx: ServiceContext, actor: Actor, args: argparse.Namespace) -> int:
    rows = await chargers.list_pending(ctx)
    emit(
        rows,
        as_json=args.json,
        columns=("charge_box_id", "first_seen_at", "last_seen_at", "attempts", "last_address"),
    )
    return 0


def add_chargers_commands(sub: Any) -> Any:
    """Add the ``chargers`` group to ``polaris``'s subparsers; answers the group's subparsers."""
    group = sub.add_parser("chargers", help="register and manage chargers")
    chargers_sub = group.add_subparsers(dest="chargers_command", required=True)

    add = with_json(chargers_sub.add_parser("add", help="register a charger (password shown once)"))
    add.add_argument("charge_box_id", help="chargeBoxId (the last part of its OCPP URL)")
    add.add_argument("--connectors", type=int, required=True, help="number of connectors")
    add.add_argument("--site", help="site name or id")
    add.add_argument("--tariff", help="tariff code (default: the default tariff)")
    add.add_argument("--max-power-w", type=int, help="most power it delivers (W)")
    add.add_argument("--label", help="a name for people")
    add.set_defaults(handler=_add)

    ls = with_json(chargers_sub.add_parser("list", help="list chargers"))
    ls.add_argument("--all", action="store_true", help="include decommissioned chargers")
    ls.set_defaults(handler=_list)

    show = with_json(chargers_sub.add_parser("show", help="one charger with its connectors"))
    show.add_argument("charge_box_id")
    show.set_defaults(handler=_show_cmd)

    change = with_json(chargers_sub.add_parser("set", help="change a charger"))
    change.add_argument("charge_box_id")
    change_parser(change)
    change.add_argument("--site", type=optional, help='site name or id ("" clears it)')
    change.add_argument("--tariff", type=optional, help='tariff code ("" clears it)')
    change.add_argument("--max-power-w", type=int)
    change.add_argument(
        "--allow-unauthenticated",
        type=yes_no,
        metavar="true|false",
        help="let it connect WITHOUT a password (dangerous: anyone can speak for it)",
    )
    change.add_argument("--label", type=optional, help='("" clears it)')
    change.add_argument(
        "--free-vend",
        type=yes_no,
        metavar="true|false",
        help="OCPP 2.0.1: accept the start button (NoAuthorization); such sessions are "
        "flagged free_vend and never billed to a customer",
    )
    change.add_argument(
        "--registration-status",
        choices=("Accepted", "Pending", "Rejected"),
        help="OCPP 2.0.1: the answer to its next BootNotification",
    )
    change.add_argument(
        "--connector-type",
        action="append",
        metavar="N=TYPE",
        help="a connector's plug (Type1 Type2 CCS1 CCS2 CHAdeMO Schuko NACS GBT; N= clears)",
    )
    change.add_argument(
        "--connector-max-power-w",
        action="append",
        metavar="N=WATTS",
        help="a connector's maximum power (N= clears: the charger's max_power_w)",
    )
    change.set_defaults(handler=_set)

    password = with_json(
        chargers_sub.add_parser("password", help="rotate a charger's password (shown once)")
    )
    password.add_argument("charge_box_id")
    password.set_defaults(handler=_password)

    remove = with_json(
        chargers_sub.add_parser("remove", help="decommission a charger (history is kept)")
    )
    remove.add_argument("charge_box_id")
    remove.set_defaults(handler=_remove)

    pending = with_json(
        chargers_sub.add_parser("pending", help="unknown chargers the gateway refused")
    )
    pending.set_defaults(handler=_pending)
    return chargers_sub


__all__ = ["add_chargers_commands"]
