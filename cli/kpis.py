"""``polaris kpis [--tz ZONE] [--json]``: the network at a glance (``services/kpis.py``)."""

from __future__ import annotations

import argparse
from typing import Any

from cli.output import emit_json, emit_table, fail
from cli.service_context import open_service_context
from config.settings import Settings
from services import kpis
from services.actor import Actor
from services.errors import ServiceError


async def run_kpis_command(settings: Settings, args: argparse.Namespace) -> int:
    try:
        async with open_service_context(settings) as ctx:
            figures = await kpis.kpis(ctx, Actor.cli(), timezone=args.tz)
    except ServiceError as exc:
        return fail(exc, as_json=args.json)
    if args.json:
        emit_json(figures)
    else:
        print_kpis(figures)
    return 0


def print_kpis(k: dict[str, Any]) -> None:
    failed = k["operations_failed_24h"]
    print(f"at                    {k['at']} ({k['timezone']})")
    print(f"energy today          {k['energy_today_kwh']:.3f} kWh (since {k['today_from']})")
    print(f"energy this month     {k['energy_month_kwh']:.3f} kWh (since {k['month_from']})")
    print(f"active sessions       {k['active_sessions']}")
    print(f"chargers online       {k['chargers_online']}")
    print(f"chargers offline      {k['chargers_offline']}")
    print(f"faulted connectors    {k['faulted_connectors']}")
    print(f"operations failed 24h {'-' if failed is None else failed}")
    if k["faults"]:
        print()
        emit_table(
            k["faults"],
            ["charge_box_id", "connector_id", "status", "error_code", "vendor_error_code", "since"],
        )
