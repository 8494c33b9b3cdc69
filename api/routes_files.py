"""The only unauthenticated routes of the API besides health: files for chargers, which cannot
send our bearer tokens (docs/firmware.md).

- ``GET /files/firmware/{token}/{name}`` — the image an ``UpdateFirmware`` named; works until the
  update's URL expires.
- ``PUT|POST /files/diagnostics/{token}[/{name}]`` — a ``GetDiagnostics`` upload; the token works
  once, until it expires. Raw body, or multipart/form-data (the first file part).

The token is the only credential (256 random bits, stored hashed). Every refusal — unknown,
expired, already used, wrong name — is the same 404.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from api.routes_firmware import body_of, declared_too_large, too_large
from api.services import Services
from services import diagnostics, firmware
from services.errors import NotFound
from services.files import TooLarge

router = APIRouter(tags=["files"], include_in_schema=False)

MAX_TOKEN = 100


@router.get("/files/firmware/{token}/{name}")
async def firmware_file(token: str, name: str, ctx: Services) -> FileResponse:
    if len(token) > MAX_TOKEN:
        raise NotFound("no such file")
    path, filename = await firmware.download_for_charger(ctx, token, name)
    return FileResponse(path, filename=filename, media_type="application/octet-stream")


async def _upload(ctx: Services, request: Request, token: str, name: str | None) -> dict[str, Any]:
    limit = ctx.settings.diagnostics_max_bytes
    if len(token) > MAX_TOKEN:
        raise NotFound("no such upload")
    if declared_too_large(request, limit):
        raise too_large(limit)
    try:
        view = await diagnostics.receive_upload(
            ctx, token, name, request.headers.get("content-type"), body_of(request)
        )
    except TooLarge as exc:
        raise too_large(limit) from exc
    return {"id": view["id"], "size_bytes": view["size_bytes"], "sha256": view["sha256"]}


@router.api_route("/files/diagnostics/{token}", methods=["PUT", "POST"], status_code=201)
async def diagnostics_upload(token: str, request: Request, ctx: Services) -> dict[str, Any]:
    return await _upload(ctx, request, token, None)


@router.api_route("/files/diagnostics/{token}/{name}", methods=["PUT", "POST"], status_code=201)
async def diagnostics_upload_named(
    token: str, name: str, request: Request, ctx: Services
) -> dict[str, Any]:
    return await _upload(ctx, request, token, name)
