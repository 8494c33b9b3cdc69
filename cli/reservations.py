"""``polaris reservations list`` / ``polaris reservations cancel ID``: operators' view of the
drivers' reservations (``services/reservations.py``)."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from cli.fleet_common import with_json
from cli.output import emit, emit_json, emit_table
from services import reservations
from services.actor import Actor
from services.context import ServiceContext

COLUMNS = (
    "id",
    "charge_box_id",
    "connector_id",
    "starts_at",
    "ends_at",
    "status",
    "reason",
    "user_id",
)
STATUSES = ("pending", "confirmed", "used", "cancelled", "failed", "expired")


def add_reservation_commands(sub: Any) -> None:
    """``polaris reservations list|cancel`` (the top-level subparsers object)."""
    res = sub.add_parser("reservations", help="drivers' reservations of connectors")
    res_sub = res.add_subparsers(dest="reservations_command", required=True)
    ls = with_json(res_sub.add_parser("list", help="reservations, newest start first"))
    ls.add_argument("--charger", default=None, help="only this chargeBoxId")
    ls.add_argument("--user", default=None, help="only this driver (user id)")
    ls.add_argument("--status", default=None, choices=STATUSES)
    ls.add_argument(
        "--from",
        dest="starts_after",
        type=datetime.fromisoformat,
        default=None,
        help="starting at or after (ISO 8601)",
    )
    ls.add_argument(
        "--to",
        dest="starts_before",
        type=datetime.fromisoformat,
        default=None,
        help="starting before (ISO 8601)",
    )
    ls.add_argument("--limit", type=int, default=100)
    ls.set_defaults(handler=_list)
    cancel = with_json(res_sub.add_parser("cancel", help="cancel a reservation"))
    cancel.add_argument("reservation_id")
    cancel.add_argument("--reason", default=None, help="what the driver reads")
    cancel.set_defaults(handler=_cancel)


async def _list(ctx: ServiceContext, actor: Actor, args: argparse.Namespace) -> int:
    rows = await reservations.list_all(
        ctx,
        reservations.ReservationFilters(
            charge_box_id=args.charger,
            user_id=args.user,
            status=args.status,
            starts_after=args.starts_after,
            starts_before=args.starts_before,
            limit=args.limit,
        ),
    )
    found = [r.model_dump(mode="json") for r in rows]
    if args.json:
        emit_json(found)
    else:
        emit_table(found, COLUMNS)
    return 0


async def _cancel(ctx: ServiceContext, actor: Actor, args: argparse.Namespace) -> int:
    row = await reservations.cancel(ctx, actor, args.reservation_id, args.reason)
    emit(row.model_dump(mode="json"), as_json=args.json)
    return 0
