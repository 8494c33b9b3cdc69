"""Firmware campaigns (docs/firmware.md): FirmwareCampaignWorkflow updates a set of chargers in
waves; this module starts it, reads its ``firmware_campaigns`` row and live ``progress`` query,
and sends the operator's ``halt`` signal."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from sqlalchemy import select
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError

from db.audit import add_audit, write_audit
from db.firmware_models import FirmwareCampaign
from db.models import Charger
from services.actor import Actor
from services.context import ServiceContext
from services.errors import Conflict, InvalidInput, NotFound
from services.firmware import firmware_row, iso_time, require_admin
from workflows.firmware_messages import CampaignInput, CampaignProgress, HaltInput

CAMPAIGN_WORKFLOW = "FirmwareCampaignWorkflow"
# A query needs a running worker: without one, the row answers after this long.
QUERY_WAIT_S = 5.0


def campaign_view(row: FirmwareCampaign) -> dict[str, Any]:
    return {
        "id": row.id,
        "workflow_id": row.workflow_id,
        "firmware_id": row.firmware_id,
        "state": row.state,
        "chargers": row.chargers,
        "wave_size": row.wave_size,
        "pause_s": row.pause_s,
        "max_failures": row.max_failures,
        "wave_deadline_s": row.wave_deadline_s,
        "waves_done": row.waves_done,
        "succeeded": row.succeeded,
        "failed": row.failed,
        "halted_reason": row.halted_reason,
        "created_by": row.created_by,
        "created_at": iso_time(row.created_at),
        "updated_at": iso_time(row.updated_at),
    }


async def start_campaign(
    ctx: ServiceContext,
    actor: Actor,
    *,
    firmware_id: str,
    chargers: list[str] | None = None,
    site_id: int | None = None,
    wave_size: int = 5,
    pause_s: int = 300,
    max_failures: int = 0,
    wave_deadline_s: int = 3600,
    poll_interval_s: float = 15.0,
    history_limit: int = 5000,
) -> dict[str, Any]:
    require_admin(actor)
    issues: list[dict[str, Any]] = []
    if (chargers is None) == (site_id is None):
        issues.append({"path": ["chargers"], "message": "give either chargers or a site"})
    for name, value, low in (
        ("wave_size", wave_size, 1),
        ("pause_s", pause_s, 0),
        ("max_failures", max_failures, 0),
        ("wave_deadline_s", wave_deadline_s, 1),
    ):
        if value < low:
            issues.append({"path": [name], "message": f"must be at least {low}"})
    if poll_interval_s <= 0:
        issues.append({"path": ["poll_interval_s"], "message": "must be positive"})
    if issues:
        raise InvalidInput("invalid campaign", issues=issues)
    await firmware_row(ctx, firmware_id)
    async with ctx.sessions() as db:
        if site_id is not None:
            targets = list(
                (
                    await db.scalars(
                        select(Charger.charge_box_id)
                        .where(Charger.site_id == site_id)
                        .order_by(Charger.charge_box_id)
                    )
                ).all()
            )
        else:
            assert chargers is not None
            targets = list(dict.fromkeys(c.strip() for c in chargers if c.strip()))
            known = set(
                (
                    await db.scalars(
                        select(Charger.charge_box_id).where(Charger.charge_box_id.in_(targets))
                    )
                ).all()
            )
            unknown = [c for c in targets if c not in known]
            if unknown:
                raise NotFound(f"unknown chargers: {', '.join(unknown)}")
    if not targets:
        raise InvalidInput(
            "no chargers", issues=[{"path": ["chargers"], "message": "the campaign is empty"}]
        )
    campaign_id = str(uuid.uuid4())
    workflow_id = f"firmware-campaign-{campaign_id}"
    async with ctx.sessions.begin() as db:
        db.add(
            FirmwareCampaign(
                id=campaign_id,
                firmware_id=firmware_id,
                workflow_id=workflow_id,
                state="running",
                chargers=targets,
                wave_size=wave_size,
                pause_s=pause_s,
                max_failures=max_failures,
                wave_deadline_s=wave_deadline_s,
                succeeded=[],
                failed={},
                created_by=actor.id,
            )
        )
        add_audit(
            db,
            actor.id,
            "firmware.campaign.start",
            subject=campaign_id,
            source=actor.source,
            details={"firmware_id": firmware_id, "chargers": len(targets)},
        )
    client = await ctx.temporal()
    await client.start_workflow(
        CAMPAIGN_WORKFLOW,
        CampaignInput(
            campaign_id=campaign_id,
            firmware_id=firmware_id,
            chargers=targets,
            wave_size=wave_size,
            pause_s=pause_s,
            max_failures=max_failures,
            wave_deadline_s=wave_deadline_s,
            poll_interval_s=poll_interval_s,
            requested_by=actor.id,
            history_limit=history_limit,
        ),
        id=workflow_id,
        task_queue=ctx.settings.temporal_task_queue,
    )
    return await campaign_status(ctx, actor, campaign_id)


async def _campaign_row(ctx: ServiceContext, campaign_id: str) -> FirmwareCampaign:
    async with ctx.sessions() as db:
        row = await db.get(FirmwareCampaign, campaign_id)
    if row is None:
        raise NotFound(f"no campaign {campaign_id}")
    return row


async def campaign_status(ctx: ServiceContext, actor: Actor, campaign_id: str) -> dict[str, Any]:
    """The campaign's row, and the workflow's live progress when it can be asked."""
    require_admin(actor)
    row = await _campaign_row(ctx, campaign_id)
    view = campaign_view(row)
    view["live"] = None
    if row.state == "running":
        try:
            handle: WorkflowHandle[Any, Any] = (await ctx.temporal()).get_workflow_handle(
                row.workflow_id
            )
            live = await asyncio.wait_for(
                handle.query("progress", result_type=CampaignProgress), QUERY_WAIT_S
            )
            view["live"] = live.model_dump()
        except (RPCError, OSError, RuntimeError, TimeoutError):
            pass  # the row is the answer while Temporal or the workers are away
    return view


async def list_campaigns(ctx: ServiceContext, actor: Actor) -> list[dict[str, Any]]:
    require_admin(actor)
    async with ctx.sessions() as db:
        rows = (
            await db.scalars(
                select(FirmwareCampaign).order_by(FirmwareCampaign.created_at.desc()).limit(100)
            )
        ).all()
    return [campaign_view(r) for r in rows]


async def halt_campaign(
    ctx: ServiceContext, actor: Actor, campaign_id: str, reason: str | None = None
) -> dict[str, Any]:
    require_admin(actor)
    row = await _campaign_row(ctx, campaign_id)
    if row.state != "running":
        raise Conflict(f"campaign {campaign_id} is {row.state}")
    await write_audit(
        ctx.sessions,
        actor.id,
        "firmware.campaign.halt",
        subject=campaign_id,
        source=actor.source,
        details={"reason": reason},
    )
    handle: WorkflowHandle[Any, Any] = (await ctx.temporal()).get_workflow_handle(row.workflow_id)
    await handle.signal("halt", HaltInput(reason=reason or f"halted by {actor.id}"))
    return await campaign_status(ctx, actor, campaign_id)
