"""``polaris sites add|list|show|set|set-limit|clear-limit|load``: where chargers stand, and
their power limit. Thin over :mod:`services.sites` and :mod:`services.site_load`."""

from __future__ import annotations

import argparse
from typing import Any

from cli.fleet_common import change_parser, given, optional, with_json
from cli.output import emit
from services import site_load, sites
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


async def _set_limit(ctx: ServiceContext, actor: Actor, args: argparse.Namespace) -> int:
    fields = {
        "kw": args.kw,
        "amps": args.amps,
        "phases": args.phases,
        "voltage": args.voltage,
        "min_kw": args.min_kw,
        "min_amps": args.min_amps,
        "safe_kw": args.safe_kw,
        "safe_amps": args.safe_amps,
    }
    body = parse(site_load.LoadLimitInput, {k: v for k, v in fields.items() if v is not None})
    view = await site_load.set_load_limit(ctx, actor, args.site, body)
    _emit_load(view, as_json=args.json)
    return 0


async def _clear_limit(ctx: ServiceContext, actor: Actor, args: argparse.Namespace) -> int:
    _emit_load(await site_load.clear_load_limit(ctx, actor, args.site), as_json=args.json)
    return 0


async def _load(ctx: ServiceContext, actor: Actor, args: argparse.Namespace) -> int:
    _emit_load(await site_load.site_load(ctx, args.site), as_json=args.json)
    return 0


def _emit_load(view: site_load.SiteLoadView, *, as_json: bool) -> None:
    if as_json:
        emit(view.model_dump(mode="json"), as_json=True)
        return
    limit = view.limit
    if limit is None:
        print(f"site {view.site_name} (id {view.site_id}): no load limit")
    else:
        unit = "W" if limit.unit == "W" else f"A per phase ({limit.phases}×{limit.voltage_v} V)"
        print(
            f"site {view.site_name} (id {view.site_id}): limit {limit.site_limit} {unit}, "
            f"minimum {limit.min_per_session}, safe default {limit.safe_limit}; "
            f"allocated {view.allocated}"
        )
    rows = [s.model_dump(mode="json") for s in view.sessions]
    emit(
        rows,
        as_json=False,
        columns=(
            "charge_box_id",
            "connector_id",
            "transaction_id",
            "limit",
            "acknowledged_limit",
            "max",
            "unit",
            "paused",
            "status",
            "connected",
        ),
    )


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

    limit = with_json(
        sites_sub.add_parser(
            "set-limit",
            help="set the site's power limit (shared by its sessions)",
            description="Either --kw, or --amps (per phase) with --phases and --voltage. "
            "--min-*/--safe-* are in the same unit (default 6 A per phase).",
        )
    )
    limit.add_argument("site", help="name or id")
    unit = limit.add_mutually_exclusive_group(required=True)
    unit.add_argument("--kw", type=float, help="limit in kW")
    unit.add_argument("--amps", type=int, help="limit in A per phase")
    limit.add_argument("--phases", type=int, choices=(1, 3), help="phases (default 3)")
    limit.add_argument("--voltage", type=int, help="phase voltage in V (default 230)")
    limit.add_argument("--min-kw", type=float, help="minimum per session (kW)")
    limit.add_argument("--min-amps", type=int, help="minimum per session (A)")
    limit.add_argument("--safe-kw", type=float, help="safe default for unreachable chargers (kW)")
    limit.add_argument("--safe-amps", type=int, help="safe default for unreachable chargers (A)")
    limit.set_defaults(handler=_set_limit)

    clear = with_json(sites_sub.add_parser("clear-limit", help="remove the site's power limit"))
    clear.add_argument("site", help="name or id")
    clear.set_defaults(handler=_clear_limit)

    load = with_json(
        sites_sub.add_parser("load", help="the site's limit and each session's current limit")
    )
    load.add_argument("site", help="name or id")
    load.set_defaults(handler=_load)
    return sites_sub


__all__ = ["add_sites_commands"]
