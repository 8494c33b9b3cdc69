"""``polaris tariffs add|list|show|version``: prices, in versions that are never edited.

Prices are integers in the currency's minor unit (cents for EUR): ``--kwh-minor 30`` is 0.30 EUR
per kWh. The idle fee (a car left plugged in after its session stopped): ``--idle-minute-minor``,
``--idle-grace-min``, ``--idle-cap-minor`` (``--no-idle-cap`` on ``version``). Thin over
:mod:`services.tariffs`.
"""

from __future__ import annotations

import argparse
from typing import Any

from cli.fleet_common import given, with_json
from cli.output import emit, emit_fields, emit_json, emit_table
from services import tariffs
from services.actor import Actor
from services.context import ServiceContext
from services.validation import parse

TERMS = {
    "kwh_minor": "price_per_kwh_minor",
    "minute_minor": "price_per_minute_minor",
    "session_minor": "price_per_session_minor",
    "fee_min_energy_wh": "session_fee_min_energy_wh",
    "fee_min_duration_s": "session_fee_min_duration_s",
    "idle_grace_min": "idle_grace_minutes",
    "idle_minute_minor": "idle_price_per_minute_minor",
    "idle_cap_minor": "idle_fee_cap_minor",
}
VERSION_COLUMNS = (
    "version",
    "valid_from",
    "price_per_kwh_minor",
    "price_per_minute_minor",
    "price_per_session_minor",
    "session_fee_min_energy_wh",
    "session_fee_min_duration_s",
    "idle_grace_minutes",
    "idle_price_per_minute_minor",
    "idle_fee_cap_minor",
    "created_by",
)


def _show(tariff: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(tariff)
        return
    emit_fields(
        {
            "code": tariff["code"],
            "currency": tariff["currency"],
            "default": tariff["is_default"],
            "in force": f"version {tariff['current']['version']}" if tariff["current"] else None,
            "chargers": tariff["charge_box_ids"],
        }
    )
    print("versions:")
    emit_table(tariff["versions"], VERSION_COLUMNS)


async def _add(ctx: ServiceContext, actor: Actor, args: argparse.Namespace) -> int:
    data = {
        "code": args.code,
        "currency": args.currency,
        "is_default": args.default,
        **given(args, TERMS),
    }
    _show(await tariffs.add_tariff(ctx, actor, parse(tariffs.NewTariff, data)), args.json)
    return 0


async def _list(ctx: ServiceContext, actor: Actor, args: argparse.Namespace) -> int:
    rows = await tariffs.list_tariffs(ctx)
    emit(
        rows,
        as_json=args.json,
        columns=(
            "code",
            "currency",
            "is_default",
            "version",
            "valid_from",
            "price_per_kwh_minor",
            "price_per_minute_minor",
            "price_per_session_minor",
            "idle_price_per_minute_minor",
            "chargers",
        ),
    )
    return 0


async def _show_cmd(ctx: ServiceContext, actor: Actor, args: argparse.Namespace) -> int:
    _show(await tariffs.show_tariff(ctx, args.code), args.json)
    return 0


async def _version(ctx: ServiceContext, actor: Actor, args: argparse.Namespace) -> int:
    data = given(args, TERMS)
    if args.no_idle_cap:
        data["remove_idle_fee_cap"] = True
    if args.valid_from is not None:
        data["valid_from"] = args.valid_from
    new = parse(tariffs.NewTariffVersion, data)
    _show(await tariffs.add_version(ctx, actor, args.code, new), args.json)
    return 0


def _terms(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kwh-minor", type=int, help="price per kWh, in minor units (cents)")
    parser.add_argument("--minute-minor", type=int, help="price per minute, in minor units")
    parser.add_argument("--session-minor", type=int, help="price per started session")
    parser.add_argument(
        "--fee-min-energy-wh", type=int, help="no session price below this energy (Wh)"
    )
    parser.add_argument(
        "--fee-min-duration-s", type=int, help="no session price below this duration (s)"
    )
    parser.add_argument(
        "--idle-minute-minor",
        type=int,
        help="idle fee per minute a car stays plugged in after the stop (0: no idle fee)",
    )
    parser.add_argument(
        "--idle-grace-min", type=int, help="free minutes after the stop before the idle fee"
    )
    parser.add_argument(
        "--idle-cap-minor", type=int, help="the most one session pays in idle fee (minor units)"
    )


def add_tariffs_commands(sub: Any) -> Any:
    group = sub.add_parser("tariffs", help="tariffs and their versions")
    tariffs_sub = group.add_subparsers(dest="tariffs_command", required=True)

    add = with_json(tariffs_sub.add_parser("add", help="add a tariff (its version 1)"))
    add.add_argument("code")
    add.add_argument("--currency", required=True, help="ISO 4217, e.g. EUR")
    add.add_argument("--default", action="store_true", help="for chargers without a tariff")
    _terms(add)
    add.set_defaults(handler=_add)

    ls = with_json(tariffs_sub.add_parser("list", help="tariffs, with the version in force"))
    ls.set_defaults(handler=_list)

    show = with_json(tariffs_sub.add_parser("show", help="one tariff and all its versions"))
    show.add_argument("code")
    show.set_defaults(handler=_show_cmd)

    version = with_json(
        tariffs_sub.add_parser(
            "version",
            help="change prices: a new version from --valid-from (default now); "
            "running sessions keep theirs",
        )
    )
    version.add_argument("code")
    version.add_argument(
        "--valid-from", help="ISO 8601 time with zone (default: now; never in the past)"
    )
    _terms(version)
    version.add_argument(
        "--no-idle-cap", action="store_true", help="drop the idle fee cap of the version in force"
    )
    version.set_defaults(handler=_version)
    return tariffs_sub


__all__ = ["add_tariffs_commands"]
