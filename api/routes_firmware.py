"""Firmware images, updates, campaigns and diagnostics (docs/firmware.md): admin only, the
session live-checked on every call, every change audited (by the service layer).

Uploads are the raw body (``Content-Type: application/octet-stream``), streamed to disk: a body
past ``POLARIS_FIRMWARE_MAX_BYTES`` is 413 (at once when Content-Length says so).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from api.authz import LiveAdmin, Principal
from api.errors import ApiError
from api.services import Services
from services import diagnostics, firmware
from services import firmware_campaigns as campaigns
from services.actor import Actor
from services.files import TooLarge

router = APIRouter(tags=["firmware"])


def actor_of(principal: Principal) -> Actor:
    return Actor(
        id=principal.actor,
        role="admin" if principal.is_admin else principal.role,
        source=principal.source or "api",
    )


def too_large(limit: int) -> ApiError:
    return ApiError(413, "PAYLOAD_TOO_LARGE", f"the body is larger than {limit} bytes")


def declared_too_large(request: Request, limit: int) -> bool:
    declared = request.headers.get("content-length", "")
    return declared.isdigit() and int(declared) > limit


async def body_of(request: Request) -> AsyncIterator[bytes]:
    async for chunk in request.stream():
        if chunk:
            yield chunk


# -- images ---------------------------------------------------------------------------------------


@router.post("/api/v1/firmware", status_code=201)
async def upload_firmware(
    principal: LiveAdmin,
    ctx: Services,
    request: Request,
    version: Annotated[str, Query(min_length=1, max_length=50)],
    name: Annotated[str, Query(min_length=1, max_length=200)],
) -> dict[str, Any]:
    limit = ctx.settings.firmware_max_bytes
    if declared_too_large(request, limit):
        raise too_large(limit)
    try:
        return await firmware.upload_firmware(
            ctx, actor_of(principal), name=name, version=version, body=body_of(request)
        )
    except TooLarge as exc:
        raise too_large(limit) from exc


@router.get("/api/v1/firmware")
async def list_firmware(principal: LiveAdmin, ctx: Services) -> list[dict[str, Any]]:
    return await firmware.list_firmware(ctx, actor_of(principal))


class UpdateIn(BaseModel):
    firmware_id: str = Field(min_length=1, max_length=36)
    retrieve_at: datetime | None = None
    retries: int | None = Field(default=None, ge=0, le=100)
    retry_interval_s: int | None = Field(default=None, ge=0, le=86400)


@router.post("/api/v1/chargers/{charge_box_id}/firmware", status_code=201)
async def update_firmware(
    charge_box_id: str, body: UpdateIn, principal: LiveAdmin, ctx: Services
) -> dict[str, Any]:
    return await firmware.update_firmware(
        ctx,
        actor_of(principal),
        charge_box_id,
        firmware_id=body.firmware_id,
        retrieve_at=body.retrieve_at,
        retries=body.retries,
        retry_interval_s=body.retry_interval_s,
    )


@router.get("/api/v1/chargers/{charge_box_id}/firmware")
async def charger_firmware(
    charge_box_id: str, principal: LiveAdmin, ctx: Services
) -> dict[str, Any]:
    return await firmware.charger_firmware(ctx, actor_of(principal), charge_box_id)


# -- campaigns ------------------------------------------------------------------------------------


class CampaignIn(BaseModel):
    firmware_id: str = Field(min_length=1, max_length=36)
    chargers: list[str] | None = Field(default=None, max_length=10000)
    site_id: int | None = None
    wave_size: int = Field(default=5, ge=1, le=1000)
    pause_s: int = Field(default=300, ge=0, le=7 * 86400)
    max_failures: int = Field(default=0, ge=0)
    wave_deadline_s: int = Field(default=3600, ge=1, le=7 * 86400)
    poll_interval_s: float = Field(default=15.0, gt=0, le=3600)


@router.post("/api/v1/firmware-campaigns", status_code=201)
async def start_campaign(body: CampaignIn, principal: LiveAdmin, ctx: Services) -> dict[str, Any]:
    return await campaigns.start_campaign(ctx, actor_of(principal), **body.model_dump())


@router.get("/api/v1/firmware-campaigns")
async def list_campaigns(principal: LiveAdmin, ctx: Services) -> list[dict[str, Any]]:
    return await campaigns.list_campaigns(ctx, actor_of(principal))


@router.get("/api/v1/firmware-campaigns/{campaign_id}")
async def campaign_status(campaign_id: str, principal: LiveAdmin, ctx: Services) -> dict[str, Any]:
    return await campaigns.campaign_status(ctx, actor_of(principal), campaign_id)


class HaltIn(BaseModel):
    reason: str | None = Field(default=None, max_length=500)


@router.post("/api/v1/firmware-campaigns/{campaign_id}/halt")
async def halt_campaign(
    campaign_id: str, principal: LiveAdmin, ctx: Services, body: HaltIn | None = None
) -> dict[str, Any]:
    return await campaigns.halt_campaign(
        ctx, actor_of(principal), campaign_id, body.reason if body else None
    )


# -- diagnostics ----------------------------------------------------------------------------------


class DiagnosticsIn(BaseModel):
    start_time: datetime | None = None
    stop_time: datetime | None = None


@router.post("/api/v1/chargers/{charge_box_id}/diagnostics", status_code=201)
async def request_diagnostics(
    charge_box_id: str, principal: LiveAdmin, ctx: Services, body: DiagnosticsIn | None = None
) -> dict[str, Any]:
    return await diagnostics.request_diagnostics(
        ctx,
        actor_of(principal),
        charge_box_id,
        start_time=body.start_time if body else None,
        stop_time=body.stop_time if body else None,
    )


@router.get("/api/v1/chargers/{charge_box_id}/diagnostics")
async def list_diagnostics(
    charge_box_id: str, principal: LiveAdmin, ctx: Services
) -> list[dict[str, Any]]:
    return await diagnostics.list_diagnostics(ctx, actor_of(principal), charge_box_id)


@router.get("/api/v1/chargers/{charge_box_id}/diagnostics/{upload_id}/file")
async def download_diagnostics(
    charge_box_id: str, upload_id: str, principal: LiveAdmin, ctx: Services
) -> FileResponse:
    path, name = await diagnostics.diagnostics_file(
        ctx, actor_of(principal), charge_box_id, upload_id
    )
    return FileResponse(path, filename=name, media_type="application/octet-stream")
