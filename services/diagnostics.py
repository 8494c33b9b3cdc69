"""Diagnostics: ``GetDiagnostics`` with an upload URL on the platform, the files chargers send,
and their listing and download (docs/firmware.md).

The upload URL is ``<public base>/files/diagnostics/<token>``; a charger may append a file name.
The token works once (the upload consumes it) and until ``diagnostics_url_ttl_s`` after the
request. Files go to ``files_root/diagnostics/<upload id>/<name>``.
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from db.audit import write_audit
from db.firmware_models import DiagnosticsUpload
from db.models import Charger
from services import files
from services.actor import Actor
from services.context import ServiceContext
from services.errors import InvalidInput, NotFound
from services.firmware import command_result, connected_charger, iso_time, require_admin
from workflows.firmware_messages import DiagnosticsInput, DiagnosticsResult

DIAGNOSTICS_WORKFLOW = "DiagnosticsRequestWorkflow"


def upload_view(row: DiagnosticsUpload) -> dict[str, Any]:
    return {
        "id": row.id,
        "charge_box_id": row.charge_box_id,
        "status": row.status,
        "error": row.error,
        "file_name": row.file_name,
        "size_bytes": row.size_bytes,
        "sha256": row.sha256,
        "requested_by": row.requested_by,
        "created_at": iso_time(row.created_at),
        "uploaded_at": iso_time(row.uploaded_at),
        "url_expires_at": iso_time(row.token_expires_at) if row.status != "uploaded" else None,
    }


async def request_diagnostics(
    ctx: ServiceContext,
    actor: Actor,
    charge_box_id: str,
    *,
    start_time: datetime | None = None,
    stop_time: datetime | None = None,
) -> dict[str, Any]:
    """Send ``GetDiagnostics`` (DiagnosticsRequestWorkflow) and answer the upload row."""
    require_admin(actor)
    await connected_charger(ctx, charge_box_id)
    workflow_id = f"diagnostics-{uuid.uuid4()}"
    await write_audit(
        ctx.sessions,
        actor.id,
        "diagnostics.request",
        subject=charge_box_id,
        source=actor.source,
        details={"workflow_id": workflow_id},
    )
    client = await ctx.temporal()
    handle = await client.start_workflow(
        DIAGNOSTICS_WORKFLOW,
        DiagnosticsInput(
            charge_box_id=charge_box_id,
            requested_by=actor.id,
            start_time=start_time,
            stop_time=stop_time,
        ),
        id=workflow_id,
        task_queue=ctx.settings.temporal_task_queue,
        result_type=DiagnosticsResult,
    )
    result = await command_result(handle, workflow_id)
    async with ctx.sessions() as db:
        row = await db.get(DiagnosticsUpload, result.upload_id)
    assert row is not None
    return {**upload_view(row), "workflow_id": workflow_id}


async def list_diagnostics(
    ctx: ServiceContext, actor: Actor, charge_box_id: str
) -> list[dict[str, Any]]:
    require_admin(actor)
    async with ctx.sessions() as db:
        if await db.get(Charger, charge_box_id) is None:
            raise NotFound(f"no charger {charge_box_id}")
        rows = (
            await db.scalars(
                select(DiagnosticsUpload)
                .where(DiagnosticsUpload.charge_box_id == charge_box_id)
                .order_by(DiagnosticsUpload.created_at.desc())
                .limit(100)
            )
        ).all()
    return [upload_view(r) for r in rows]


async def diagnostics_file(
    ctx: ServiceContext, actor: Actor, charge_box_id: str, upload_id: str
) -> tuple[Path, str]:
    """An uploaded file, for an admin (audited)."""
    require_admin(actor)
    async with ctx.sessions() as db:
        row = await db.get(DiagnosticsUpload, upload_id)
    if row is None or row.charge_box_id != charge_box_id or row.storage_path is None:
        raise NotFound(f"no diagnostics file {upload_id}")
    await write_audit(
        ctx.sessions,
        actor.id,
        "diagnostics.download",
        subject=charge_box_id,
        source=actor.source,
        details={"upload_id": upload_id},
    )
    return files.path_of(ctx.settings, row.storage_path), row.file_name or "diagnostics"


async def receive_upload(
    ctx: ServiceContext,
    token: str,
    name: str | None,
    content_type: str | None,
    body: AsyncIterator[bytes],
) -> dict[str, Any]:
    """A charger's upload (HTTP PUT, or POST raw or multipart/form-data). The token is claimed
    first (one upload per token, even two at once); a refused token is a NotFound."""
    now = datetime.now(UTC)
    digest = files.token_digest(token)
    async with ctx.sessions.begin() as db:
        row = (
            await db.scalars(
                update(DiagnosticsUpload)
                .where(
                    DiagnosticsUpload.token_sha256 == digest,
                    DiagnosticsUpload.token_expires_at > now,
                    DiagnosticsUpload.status.in_(("requested", "sent")),
                )
                .values(token_sha256=None, status="receiving")
                .returning(DiagnosticsUpload)
            )
        ).one_or_none()
    if row is None:
        raise NotFound("no such upload")
    fallback = row.file_name or f"diagnostics-{row.charge_box_id}"
    is_form = (content_type or "").lower().startswith("multipart/form-data")
    stored_name = files.safe_name(name or row.file_name or "", fallback)
    try:
        stored = await files.store(
            ctx.settings,
            f"diagnostics/{row.id}",
            stored_name,
            body,
            ctx.settings.diagnostics_max_bytes,
        )
        if is_form:
            stored, stored_name = _unwrap_form(ctx, row.id, stored, content_type or "", fallback)
    except BaseException as exc:
        async with ctx.sessions.begin() as db:
            await db.execute(
                update(DiagnosticsUpload)
                .where(DiagnosticsUpload.id == row.id)
                .values(status="failed", error=f"upload refused: {type(exc).__name__}")
            )
        raise
    async with ctx.sessions.begin() as db:
        await db.execute(
            update(DiagnosticsUpload)
            .where(DiagnosticsUpload.id == row.id)
            .values(
                status="uploaded",
                file_name=stored_name,
                size_bytes=stored.size_bytes,
                sha256=stored.sha256,
                storage_path=stored.relative_path,
                uploaded_at=datetime.now(UTC),
            )
        )
        saved = await db.get(DiagnosticsUpload, row.id)
    assert saved is not None
    return upload_view(saved)


def _unwrap_form(
    ctx: ServiceContext, upload_id: str, raw: files.StoredFile, content_type: str, fallback: str
) -> tuple[files.StoredFile, str]:
    """The first file part of a multipart/form-data body (already within the size limit)."""
    raw_path = files.path_of(ctx.settings, raw.relative_path)
    data = raw_path.read_bytes()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + data
    )
    part = next((p for p in message.iter_parts() if p.get_filename()), None)
    if part is None:
        raise InvalidInput("no file part", issues=[{"path": ["body"], "message": "no file"}])
    payload = part.get_payload(decode=True)
    content = payload if isinstance(payload, bytes) else b""
    name = files.safe_name(part.get_filename() or "", fallback)
    raw_path.unlink(missing_ok=True)
    path = raw_path.parent / name
    path.write_bytes(content)
    return (
        files.StoredFile(
            f"diagnostics/{upload_id}/{name}", len(content), hashlib.sha256(content).hexdigest()
        ),
        name,
    )
