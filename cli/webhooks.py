"""``polaris webhooks endpoints add|list|show|set|remove|rotate-secret``, ``polaris webhooks
deliveries list|show`` and ``polaris webhooks redeliver``: thin over :mod:`services.webhooks`
(docs/webhooks.md). Endpoints made here are owned by the operators' inbox."""

from __future__ import annotations

import argparse
from typing import Any

from cli.fleet_common import change_parser, given, with_json, yes_no
from cli.output import emit
from services import webhooks
from services.actor import Actor
from services.context import ServiceContext
from services.validation import parse

ENDPOINT_COLUMNS = ("id", "url", "enabled", "event_types", "consecutive_failures", "description")
DELIVERY_COLUMNS = (
    "id",
    "endpoint_id",
    "event_type",
    "status",
    "chain",
    "attempts",
    "last_status_code",
    "last_error",
    "created_at",
)


def _types(value: str) -> list[str]:
    return [t.strip() for t in value.split(",") if t.strip()]


async def _add(ctx: ServiceContext, actor: Actor, args: argparse.Namespace) -> int:
    fields = {"url": args.url, "event_types": args.events, "description": args.description or ""}
    new = parse(webhooks.NewEndpoint, fields)
    emit(await webhooks.create_endpoint(ctx, actor, new), as_json=args.json)
    return 0


async def _list(ctx: ServiceContext, actor: Actor, args: argparse.Namespace) -> int:
    emit(await webhooks.list_endpoints(ctx), as_json=args.json, columns=ENDPOINT_COLUMNS)
    return 0


async def _show(ctx: ServiceContext, actor: Actor, args: argparse.Namespace) -> int:
    emit(await webhooks.show_endpoint(ctx, args.endpoint_id), as_json=args.json)
    return 0


async def _set(ctx: ServiceContext, actor: Actor, args: argparse.Namespace) -> int:
    names = {"url": "url", "description": "description", "events": "event_types"}
    fields = given(args, names, clearing=True)
    if hasattr(args, "enabled"):
        fields["enabled"] = args.enabled
    patch = parse(webhooks.EndpointPatch, fields)
    emit(await webhooks.update_endpoint(ctx, actor, args.endpoint_id, patch), as_json=args.json)
    return 0


async def _remove(ctx: ServiceContext, actor: Actor, args: argparse.Namespace) -> int:
    emit(await webhooks.delete_endpoint(ctx, actor, args.endpoint_id), as_json=args.json)
    return 0


async def _rotate(ctx: ServiceContext, actor: Actor, args: argparse.Namespace) -> int:
    emit(await webhooks.rotate_secret(ctx, actor, args.endpoint_id), as_json=args.json)
    return 0


async def _deliveries(ctx: ServiceContext, actor: Actor, args: argparse.Namespace) -> int:
    rows = await webhooks.list_deliveries(
        ctx, endpoint_id=args.endpoint, status=args.status, limit=args.limit
    )
    emit(rows, as_json=args.json, columns=DELIVERY_COLUMNS)
    return 0


async def _delivery(ctx: ServiceContext, actor: Actor, args: argparse.Namespace) -> int:
    emit(await webhooks.show_delivery(ctx, args.delivery_id), as_json=args.json)
    return 0


async def _redeliver(ctx: ServiceContext, actor: Actor, args: argparse.Namespace) -> int:
    emit(await webhooks.redeliver(ctx, actor, args.delivery_id), as_json=args.json)
    return 0


def add_webhooks_commands(sub: Any) -> Any:
    group = sub.add_parser("webhooks", help="outgoing webhooks (endpoints, deliveries)")
    wh = group.add_subparsers(dest="webhooks_command", required=True)

    endpoints = wh.add_parser("endpoints", help="webhook endpoints")
    ep = endpoints.add_subparsers(dest="endpoints_command", required=True)
    add = with_json(ep.add_parser("add", help="add an endpoint (prints its secret once)"))
    add.add_argument("url", help="http(s) URL that receives the POSTs")
    add.add_argument(
        "--events", type=_types, required=True, help="comma-separated event types (or family.*)"
    )
    add.add_argument("--description", help="what it is for")
    add.set_defaults(handler=_add)
    with_json(ep.add_parser("list", help="list endpoints")).set_defaults(handler=_list)
    show = with_json(ep.add_parser("show", help="one endpoint and its delivery counts"))
    show.add_argument("endpoint_id")
    show.set_defaults(handler=_show)
    change = with_json(ep.add_parser("set", help="change an endpoint"))
    change.add_argument("endpoint_id")
    change_parser(change)
    change.add_argument("--url")
    change.add_argument("--description")
    change.add_argument("--events", type=_types, help="comma-separated event types")
    change.add_argument("--enabled", type=yes_no, help="true or false")
    change.set_defaults(handler=_set)
    remove = with_json(ep.add_parser("remove", help="delete an endpoint and its delivery log"))
    remove.add_argument("endpoint_id")
    remove.set_defaults(handler=_remove)
    rotate = with_json(ep.add_parser("rotate-secret", help="a new secret (old one overlaps)"))
    rotate.add_argument("endpoint_id")
    rotate.set_defaults(handler=_rotate)

    deliveries = wh.add_parser("deliveries", help="the delivery log")
    dl = deliveries.add_subparsers(dest="deliveries_command", required=True)
    ls = with_json(dl.add_parser("list", help="newest first"))
    ls.add_argument("--endpoint", help="endpoint id")
    ls.add_argument("--status", choices=["pending", "delivered", "failed"])
    ls.add_argument("--limit", type=int, default=50)
    ls.set_defaults(handler=_deliveries)
    one = with_json(dl.add_parser("show", help="a delivery and every attempt"))
    one.add_argument("delivery_id")
    one.set_defaults(handler=_delivery)

    again = with_json(wh.add_parser("redeliver", help="deliver again (a new attempt chain)"))
    again.add_argument("delivery_id")
    again.set_defaults(handler=_redeliver)
    return wh
