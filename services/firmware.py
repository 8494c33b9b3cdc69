"""Firmware: images and updates of one charger (docs/firmware.md; campaigns are in
``services/firmware_campaigns.py``).

Uploads are stored under ``settings.files_root/firmware/<id>/<name>`` with their SHA-256. An
update is a workflow (FirmwareUpdateWorkflow); this module starts it, reads the update rows, and
serves the download a charger asks for with its token.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import select, update
from temporalio.client import WorkflowHandle

from db.audit import add_audit, write_audit
from db.firmware_models import ChargerFirmwareState, FirmwareFile, FirmwareUpdate
from db.models import Charger
from services import files
from services.actor import Actor
from services.context import ServiceContext
from services.errors import ChargerOffline, Forbidden, InvalidInput, NotFound, ServiceError
from workflows.firmware_messages import (
    FirmwareUpdateInput,
    FirmwareUpdateResult,
)

UPDATE_WORKFLOW = "FirmwareUpdateWorkflow"


# How long an API call or a command waits for the charger's answer (the workflow's command
# retries fit well within it); past it the workflow goes on and the caller is told so.
COMMAND_WAIT_S = 180.0


class StillPending(ServiceError):
    status = 504
    code = "PENDING"


R = TypeVar("R")


async def command_result(handle: WorkflowHandle[Any, R], workflow_id: str) -> R:
    """The workflow's result, or :class:`StillPending` (no worker, Temporal slow …)."""
    try:
        return await asyncio.wait_for(handle.result(), COMMAND_WAIT_S)
    except TimeoutError:
        raise StillPending(
            f"no answer yet; the workflow {workflow_id} goes on (see `polaris firmware show`)"
        ) from None


def require_admin(actor: Actor) -> None:
    if actor.role != "admin":
        raise Forbidden("this needs the admin role")


def iso_time(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


def firmware_view(row: FirmwareFile) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "version": row.version,
        "size_bytes": row.size_bytes,
        "sha256": row.sha256,
        "uploaded_by": row.uploaded_by,
        "created_at": iso_time(row.created_at),
    }


def update_view(row: FirmwareUpdate, charger_version: str | None = None) -> dict[str, Any]:
    return {
        "id": row.id,
        "charge_box_id": row.charge_box_id,
        "firmware_id": row.firmware_id,
        "campaign_id": row.campaign_id,
        "status": row.status,
        "error": row.error,
        "firmware_status": row.firmware_status,
        "firmware_status_at": iso_time(row.firmware_status_at),
        "retrieve_at": iso_time(row.retrieve_at),
        "url_expires_at": iso_time(row.token_expires_at),
        "downloads": row.downloads,
        "version_before": row.version_before,
        # What the charger's last BootNotification reported.
        "charger_firmware_version": charger_version,
        "requested_by": row.requested_by,
        "created_at": iso_time(row.created_at),
        "sent_at": iso_time(row.sent_at),
    }


# -- files ----------------------------------------------------------------------------------------


async def upload_firmware(
    ctx: ServiceContext, actor: Actor, *, name: str, version: str, body: AsyncIterator[bytes]
) -> dict[str, Any]:
    """Store an image (streamed; :class:`services.files.TooLarge` past the limit)."""
    require_admin(actor)
    files.check_name(name, path=["name"])
    version = version.strip()
    if not version or len(version) > 50:
        raise InvalidInput(
            "invalid version", issues=[{"path": ["version"], "message": "1 to 50 characters"}]
        )
    firmware_id = str(uuid.uuid4())
    stored = await files.store(
        ctx.settings, f"firmware/{firmware_id}", name, body, ctx.settings.firmware_max_bytes
    )
    if stored.size_bytes == 0:
        files.path_of(ctx.settings, stored.relative_path).unlink(missing_ok=True)
        raise InvalidInput("empty file", issues=[{"path": ["body"], "message": "no bytes"}])
    row = FirmwareFile(
        id=firmware_id,
        name=name,
        version=version,
        size_bytes=stored.size_bytes,
        sha256=stored.sha256,
        storage_path=stored.relative_path,
        uploaded_by=actor.id,
    )
    async with ctx.sessions.begin() as db:
        db.add(row)
        add_audit(
            db,
            actor.id,
            "firmware.upload",
            subject=firmware_id,
            source=actor.source,
            details={"name": name, "version": version, "sha256": stored.sha256},
        )
    async with ctx.sessions() as db:
        saved = await db.get(FirmwareFile, firmware_id)
    assert saved is not None
    return firmware_view(saved)


async def list_firmware(ctx: ServiceContext, actor: Actor) -> list[dict[str, Any]]:
    require_admin(actor)
    async with ctx.sessions() as db:
        rows = (
            await db.scalars(select(FirmwareFile).order_by(FirmwareFile.created_at.desc()))
        ).all()
    return [firmware_view(r) for r in rows]


async def firmware_row(ctx: ServiceContext, firmware_id: str) -> FirmwareFile:
    async with ctx.sessions() as db:
        row = await db.get(FirmwareFile, firmware_id)
    if row is None:
        raise NotFound(f"no firmware {firmware_id}")
    return row


async def download_for_charger(ctx: ServiceContext, token: str, name: str) -> tuple[Path, str]:
    """The file an update's URL names, if its token is known, unexpired and the name matches.
    Every refusal is the same NotFound: the caller learns nothing about which part was wrong."""
    now = datetime.now(UTC)
    async with ctx.sessions.begin() as db:
        found = (
            await db.execute(
                select(FirmwareUpdate, FirmwareFile)
                .join(FirmwareFile, FirmwareFile.id == FirmwareUpdate.firmware_id)
                .where(FirmwareUpdate.token_sha256 == files.token_digest(token))
            )
        ).first()
        if found is None:
            raise NotFound("no such file")
        upd, firmware = found[0], found[1]
        if upd.token_expires_at is None or upd.token_expires_at <= now or firmware.name != name:
            raise NotFound("no such file")
        await db.execute(
            update(FirmwareUpdate)
            .where(FirmwareUpdate.id == upd.id)
            .values(downloads=FirmwareUpdate.downloads + 1)
        )
    return files.path_of(ctx.settings, firmware.storage_path), firmware.name


# -- one charger ----------------------------------------------------------------------------------


async def connected_charger(ctx: ServiceContext, charge_box_id: str) -> Charger:
    async with ctx.sessions() as db:
        charger = await db.get(Charger, charge_box_id)
    if charger is None:
        raise NotFound(f"no charger {charge_box_id}")
    if not charger.connected or not charger.gateway_instance:
        raise ChargerOffline(f"{charge_box_id} is not connected")
    return charger


async def update_firmware(
    ctx: ServiceContext,
    actor: Actor,
    charge_box_id: str,
    *,
    firmware_id: str,
    retrieve_at: datetime | None = None,
    retries: int | None = None,
    retry_interval_s: int | None = None,
) -> dict[str, Any]:
    """Send ``UpdateFirmware`` (through FirmwareUpdateWorkflow) and answer the update row."""
    require_admin(actor)
    await firmware_row(ctx, firmware_id)
    await connected_charger(ctx, charge_box_id)
    if retrieve_at is not None and retrieve_at.tzinfo is None:
        retrieve_at = retrieve_at.replace(tzinfo=UTC)
    workflow_id = f"firmware-update-{uuid.uuid4()}"
    await write_audit(
        ctx.sessions,
        actor.id,
        "firmware.update",
        subject=charge_box_id,
        source=actor.source,
        details={"firmware_id": firmware_id, "workflow_id": workflow_id},
    )
    client = await ctx.temporal()
    handle = await client.start_workflow(
        UPDATE_WORKFLOW,
        FirmwareUpdateInput(
            charge_box_id=charge_box_id,
            firmware_id=firmware_id,
            retrieve_at=retrieve_at,
            retries=retries,
            retry_interval_s=retry_interval_s,
            requested_by=actor.id,
        ),
        id=workflow_id,
        task_queue=ctx.settings.temporal_task_queue,
        result_type=FirmwareUpdateResult,
    )
    result = await command_result(handle, workflow_id)
    view = await get_update(ctx, actor, result.update_id)
    view["workflow_id"] = workflow_id
    return view


async def get_update(ctx: ServiceContext, actor: Actor, update_id: str) -> dict[str, Any]:
    require_admin(actor)
    async with ctx.sessions() as db:
        row = await db.get(FirmwareUpdate, update_id)
        if row is None:
            raise NotFound(f"no firmware update {update_id}")
        charger = await db.get(Charger, row.charge_box_id)
    return update_view(row, charger.firmware_version if charger else None)


async def charger_firmware(ctx: ServiceContext, actor: Actor, charge_box_id: str) -> dict[str, Any]:
    """A charger's firmware: version, last reported statuses, its updates (newest first)."""
    require_admin(actor)
    async with ctx.sessions() as db:
        charger = await db.get(Charger, charge_box_id)
        if charger is None:
            raise NotFound(f"no charger {charge_box_id}")
        state = await db.get(ChargerFirmwareState, charge_box_id)
        rows = (
            await db.scalars(
                select(FirmwareUpdate)
                .where(FirmwareUpdate.charge_box_id == charge_box_id)
                .order_by(FirmwareUpdate.created_at.desc())
                .limit(50)
            )
        ).all()
    return {
        "charge_box_id": charge_box_id,
        "firmware_version": charger.firmware_version,
        "firmware_status": state.firmware_status if state else None,
        "firmware_status_at": iso_time(state.firmware_status_at) if state else None,
        "diagnostics_status": state.diagnostics_status if state else None,
        "diagnostics_status_at": iso_time(state.diagnostics_status_at) if state else None,
        "updates": [update_view(r, charger.firmware_version) for r in rows],
    }
