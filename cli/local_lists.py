"""``polaris local-list show ID`` / ``polaris local-list sync (ID | --all)``.

``show`` prints the list the charger acknowledged and its sync state; ``sync`` asks for a Full
update (for one charger also a new support probe) and, for one charger, waits up to
``--wait-s`` for the round to finish and prints the charger's state then.
"""

from __future__ import annotations

import argparse
from typing import Any

from cli.output import emit, emit_json, emit_table, fail
from cli.service_context import open_service_context
from config.settings import Settings
from services import local_lists
from services.actor import Actor
from services.errors import InvalidInput, ServiceError

ENTRY_COLUMNS = ("idTag", "status", "expiryDate", "parentIdTag")


async def run_local_list_command(settings: Settings, args: argparse.Namespace) -> int:
    as_json = bool(getattr(args, "json", False))
    try:
        async with open_service_context(settings) as ctx:
            if args.local_list_command == "show":
                view = await local_lists.show(ctx, args.charge_box_id)
                _print_view(view.model_dump(mode="json"), as_json)
                return 0
            if bool(args.all) == bool(args.charge_box_id):
                raise InvalidInput(
                    "name one charger or --all",
                    issues=[{"path": ["charge_box_id"], "message": "one charger or --all"}],
                )
            asked = await local_lists.request_sync(ctx, Actor.cli(), args.charge_box_id)
            if args.charge_box_id is None or args.wait_s <= 0:
                emit(asked.model_dump(mode="json"), as_json=as_json)
                return 0
            view = await local_lists.wait_for_sync(
                ctx, args.charge_box_id, asked.requested_at, args.wait_s
            )
            _print_view(
                {"request": asked.model_dump(mode="json"), **view.model_dump(mode="json")}, as_json
            )
            return 0 if view.last_sync_status in ("in_step", "sent", "unsupported") else 1
    except ServiceError as exc:
        return fail(exc, as_json=as_json)


def _print_view(view: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(view)
        return
    emit({k: v for k, v in view.items() if k != "entries"}, as_json=False)
    if view["entries"]:
        print()
        emit_table(view["entries"], ENTRY_COLUMNS)
