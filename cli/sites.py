"""``polaris sites add|list|show|set``: where chargers stand. Thin over :mod:`services.sites`."""

from __future__ import annotations

import argparse
from typing import Any

from cli.fleet_common import change_parser, given, optional, with_json
from cli.output import emit
from services import sites
from services.actor import Actor
from services.context import ServiceContext
from services.validation import parse

FIELDS = {
    "address": "address",
    "lat": "latitude",
    "lon": "longitude",
    "timezone": "timezone",
}


async def _add(ctx: ServiceContext, actor: Actor, args: argparse.Namespace) -> int:
    new = parse(sites.NewSite, {"name": args.name, **given(args, FIELDS)})
    emit(await sites.add_site(ctx, actor, new), as_json=args.json)
    return 0


async def _list(ctx: ServiceContext, actor: Actor, args: argparse.Namespace) -> int:
    rows = await sites.list_sites(ctx)
    emit(
        rows,
        as_json=args.json,
        columns=("id", "name", "timezone", "latitude", "longitude", "chargers", "address"),
    )
    return 0


async def _show(ctx: ServiceContext, actor: Actor, args: argparse.Namespace) -> int:
    emit(await sites.show_site(ctx, args.site), as_json=args.json)
    return 0


async def _set(ctx: ServiceContext, actor: Actor, args: argparse.Namespace) -> int:
    patch = parse(sites.SitePatch, given(args, {"name": "name", **FIELDS}, clearing=True))
    emit(await sites.set_site(ctx, actor, args.site, patch), as_json=args.json)
    return 0


def _site_options(parser: argparse.ArgumentParser, *, clearable: bool) -> None:
    text = optional if clearable else str
    parser.add_argument("--address", type=text, help="postal address")
    parser.add_argument("--lat", type=float, help="latitude (WGS 84 degrees, -90..90)")
    parser.add_argument("--lon", type=float, help="longitude (WGS 84 degrees, -180..180)")
    parser.add_argument("--timezone", help="IANA time zone, e.g. Europe/Amsterdam")


def add_sites_commands(sub: Any) -> Any:
    group = sub.add_parser("sites", help="sites (where chargers stand)")
    sites_sub = group.add_subparsers(dest="sites_command", required=True)

    add = with_json(sites_sub.add_parser("add", help="add a site"))
    add.add_argument("name")
    _site_options(add, clearable=False)
    add.set_defaults(handler=_add)

    ls = with_json(sites_sub.add_parser("list", help="list sites"))
    ls.set_defaults(handler=_list)

    show = with_json(sites_sub.add_parser("show", help="one site and its chargers"))
    show.add_argument("site", help="name or id")
    show.set_defaults(handler=_show)

    change = with_json(sites_sub.add_parser("set", help="change a site"))
    change.add_argument("site", help="name or id")
    change_parser(change)
    change.add_argument("--name", help="new name")
    _site_options(change, clearable=True)
    change.set_defaults(handler=_set)
    return sites_sub


__all__ = ["add_sites_commands"]
