"""``polaris firmware …`` and ``polaris diagnostics …`` (docs/firmware.md): thin callers of
``services/firmware.py`` and ``services/diagnostics.py``, every one with ``--json``."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

from cli.output import emit, fail
from cli.service_context import open_service_context
from config.settings import Settings
from services import diagnostics, firmware
from services import firmware_campaigns as campaigns
from services.actor import Actor
from services.errors import InvalidInput, ServiceError
from services.files import CHUNK, TooLarge

FIRMWARE_COLUMNS = ("id", "name", "version", "size_bytes", "sha256", "created_at")
DIAGNOSTICS_COLUMNS = ("id", "status", "file_name", "size_bytes", "uploaded_at", "error")


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as f:
        while chunk := await asyncio.to_thread(f.read, CHUNK):
            yield chunk


def _when(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            "invalid time",
            issues=[
                {"path": ["retrieve_at"], "message": "an ISO 8601 time, e.g. 2026-12-01T02:00Z"}
            ],
        ) from None


async def _firmware(settings: Settings, args: argparse.Namespace) -> int:
    actor = Actor.cli()
    async with open_service_context(settings) as ctx:
        cmd = args.firmware_command
        if cmd == "upload":
            if not args.file.is_file():
                raise InvalidInput(f"no file {args.file}")
            try:
                view = await firmware.upload_firmware(
                    ctx,
                    actor,
                    name=args.name or args.file.name,
                    version=args.version,
                    body=_chunks(args.file),
                )
            except TooLarge:
                raise InvalidInput(
                    f"larger than POLARIS_FIRMWARE_MAX_BYTES ({settings.firmware_max_bytes})"
                ) from None
            emit(view, as_json=args.json)
        elif cmd == "list":
            emit(
                await firmware.list_firmware(ctx, actor),
                as_json=args.json,
                columns=FIRMWARE_COLUMNS,
            )
        elif cmd == "show":
            view = await firmware.charger_firmware(ctx, actor, args.charge_box_id)
            emit(view, as_json=args.json)
        elif cmd == "update":
            view = await firmware.update_firmware(
                ctx,
                actor,
                args.charge_box_id,
                firmware_id=args.firmware,
                retrieve_at=_when(args.retrieve_at),
                retries=args.retries,
                retry_interval_s=args.retry_interval,
            )
            emit(view, as_json=args.json)
            return 0 if view["status"] == "sent" else 1
        else:
            return await _campaign(ctx, actor, args)
    return 0


async def _campaign(ctx: Any, actor: Actor, args: argparse.Namespace) -> int:
    cmd = args.campaign_command
    if cmd == "start":
        view = await campaigns.start_campaign(
            ctx,
            actor,
            firmware_id=args.firmware,
            chargers=args.chargers.split(",") if args.chargers else None,
            site_id=args.site,
            wave_size=args.wave_size,
            pause_s=args.pause,
            max_failures=args.max_failures,
            wave_deadline_s=args.wave_deadline,
            poll_interval_s=args.poll_interval,
        )
    elif cmd == "status":
        view = await campaigns.campaign_status(ctx, actor, args.campaign_id)
    elif cmd == "halt":
        view = await campaigns.halt_campaign(ctx, actor, args.campaign_id, args.reason)
    else:
        rows = await campaigns.list_campaigns(ctx, actor)
        emit(rows, as_json=args.json, columns=("id", "state", "waves_done", "created_at"))
        return 0
    emit(view, as_json=args.json)
    return 0


async def _diagnostics(settings: Settings, args: argparse.Namespace) -> int:
    actor = Actor.cli()
    async with open_service_context(settings) as ctx:
        if args.diagnostics_command == "request":
            view = await diagnostics.request_diagnostics(ctx, actor, args.charge_box_id)
            emit(view, as_json=args.json)
            return 0 if view["status"] != "failed" else 1
        rows = await diagnostics.list_diagnostics(ctx, actor, args.charge_box_id)
        emit(rows, as_json=args.json, columns=DIAGNOSTICS_COLUMNS)
    return 0


async def run_firmware_command(settings: Settings, args: argparse.Namespace) -> int:
    try:
        return await _firmware(settings, args)
    except ServiceError as exc:
        return fail(exc, as_json=args.json)


async def run_diagnostics_command(settings: Settings, args: argparse.Namespace) -> int:
    try:
        return await _diagnostics(settings, args)
    except ServiceError as exc:
        return fail(exc, as_json=args.json)
