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


def add_parsers(sub: Any) -> None:
    fw = sub.add_parser("firmware", help="firmware images, updates and campaigns")
    fw_sub = fw.add_subparsers(dest="firmware_command", required=True)
    upload = fw_sub.add_parser("upload", help="store a firmware image")
    upload.add_argument("file", type=Path)
    upload.add_argument("--version", required=True, help="the version the image installs")
    upload.add_argument("--name", help="the file name chargers download (default: FILE's)")
    upload.add_argument("--json", action="store_true")
    ls = fw_sub.add_parser("list", help="list firmware images")
    ls.add_argument("--json", action="store_true")
    show = fw_sub.add_parser("show", help="a charger's firmware state and updates")
    show.add_argument("charge_box_id")
    show.add_argument("--json", action="store_true")
    upd = fw_sub.add_parser("update", help="send UpdateFirmware to one charger")
    upd.add_argument("charge_box_id")
    upd.add_argument("--firmware", required=True, help="firmware id (polaris firmware list)")
    upd.add_argument("--retrieve-at", help="ISO 8601 time to download from (default: now)")
    upd.add_argument("--retries", type=int)
    upd.add_argument("--retry-interval", type=int, help="seconds")
    upd.add_argument("--json", action="store_true")
    campaign = fw_sub.add_parser("campaign", help="update many chargers in waves")
    c_sub = campaign.add_subparsers(dest="campaign_command", required=True)
    start = c_sub.add_parser("start", help="start a campaign")
    start.add_argument("--firmware", required=True)
    target = start.add_mutually_exclusive_group(required=True)
    target.add_argument("--chargers", help="A,B,C")
    target.add_argument("--site", type=int, help="every charger of this site id")
    start.add_argument("--wave-size", type=int, default=5)
    start.add_argument("--pause", type=int, default=300, help="seconds between waves")
    start.add_argument(
        "--max-failures", type=int, default=0, help="halt once more chargers than this failed"
    )
    start.add_argument(
        "--wave-deadline", type=int, default=3600, help="seconds a wave has to report Installed"
    )
    start.add_argument("--poll-interval", type=float, default=15.0, help="seconds")
    start.add_argument("--json", action="store_true")
    for name, text in (("status", "a campaign's progress"), ("halt", "halt a campaign")):
        cmd = c_sub.add_parser(name, help=text)
        cmd.add_argument("campaign_id")
        if name == "halt":
            cmd.add_argument("--reason")
        cmd.add_argument("--json", action="store_true")
    c_list = c_sub.add_parser("list", help="list campaigns")
    c_list.add_argument("--json", action="store_true")

    diag = sub.add_parser("diagnostics", help="diagnostics files from chargers")
    d_sub = diag.add_subparsers(dest="diagnostics_command", required=True)
    request = d_sub.add_parser("request", help="send GetDiagnostics with an upload URL")
    request.add_argument("charge_box_id")
    request.add_argument("--json", action="store_true")
    d_list = d_sub.add_parser("list", help="a charger's diagnostics requests and files")
    d_list.add_argument("charge_box_id")
    d_list.add_argument("--json", action="store_true")


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
