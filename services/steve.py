"""SteVe sync runs and Adaptive Cadence for operators (docs/steve.md): trigger a run, list runs,
retry a failed one, read the cadence. The API (``api/routes_steve.py``) and the CLI
(``polaris steve …``) are thin layers over these functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from config.settings import Settings
from db.engine import SessionFactory
from db.steve_models import SteveSyncRun
from services.actor import Actor
from services.context import ServiceContext
from services.errors import Conflict, InvalidInput, NotFound, Unavailable
from services.firmware import require_admin
from workflows.steve_cadence import SteveCadenceWorkflow
from workflows.steve_messages import (
    CADENCE_WORKFLOW_ID,
    QUERY_CADENCE,
    SIGNAL_CADENCE_MANUAL,
    CadenceActivity,
    CadenceInput,
    CadenceStatus,
    SyncRunInput,
    manual_run_id,
    retry_run_id,
)
from workflows.steve_sync import SyncRunWorkflow

RUNS_MAX = 200
STALE_AFTER = timedelta(minutes=30)


def cadence_input(settings: Settings, *, run_now: bool = True) -> CadenceInput:
    return CadenceInput(
        active_s=settings.steve_sync_active_s,
        idle_s=settings.steve_sync_idle_s,
        dormant_s=settings.steve_sync_dormant_s,
        demote_after=settings.steve_sync_demote_after,
        dormant_after_s=settings.steve_sync_dormant_after_s,
        run_now=run_now,
    )


async def ensure_cadence(client: Client, settings: Settings) -> None:
    """Make sure the one cadence scheduler runs (every worker asks; the first start wins)."""
    await client.start_workflow(
        SteveCadenceWorkflow.run,
        cadence_input(settings),
        id=CADENCE_WORKFLOW_ID,
        task_queue=settings.temporal_task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )


def _configured(ctx: ServiceContext) -> None:
    if not ctx.settings.steve_api_url:
        raise Conflict("SteVe is not configured (POLARIS_STEVE_API_URL): there is nothing to sync")


async def _client(ctx: ServiceContext) -> Client:
    try:
        return await ctx.temporal()
    except (RPCError, RuntimeError, OSError) as exc:
        raise Unavailable("Temporal is not reachable; try again") from exc


async def _start_run(
    client: Client, settings: Settings, workflow_id: str, params: SyncRunInput
) -> bool:
    """Start the run; False when this id already ran or runs (a double click)."""
    try:
        await client.start_workflow(
            SyncRunWorkflow.run,
            params,
            id=workflow_id,
            task_queue=settings.temporal_task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        )
    except WorkflowAlreadyStartedError:
        return False
    return True


async def trigger_sync(
    ctx: ServiceContext, actor: Actor, *, now: datetime | None = None
) -> dict[str, Any]:
    """Start a sync run now, and put the cadence back to Active. Every trigger within the same
    minute names the same run, so a double click starts one run."""
    require_admin(actor)
    _configured(ctx)
    client = await _client(ctx)
    workflow_id = manual_run_id(now or datetime.now(UTC))
    started = await _start_run(
        client,
        ctx.settings,
        workflow_id,
        SyncRunInput(trigger="manual", requested_by=actor.id),
    )
    await client.start_workflow(
        SteveCadenceWorkflow.run,
        cadence_input(ctx.settings, run_now=False),
        id=CADENCE_WORKFLOW_ID,
        task_queue=ctx.settings.temporal_task_queue,
        start_signal=SIGNAL_CADENCE_MANUAL,
        start_signal_args=[CadenceActivity()],
    )
    return {"workflow_id": workflow_id, "started": started, "deduplicated": not started}


async def retry_run(ctx: ServiceContext, actor: Actor, run_id: int) -> dict[str, Any]:
    """A failed run again, as a new run (``retry_of`` names this one)."""
    require_admin(actor)
    _configured(ctx)
    async with ctx.sessions() as db:
        run = await db.get(SteveSyncRun, run_id)
    if run is None:
        raise NotFound(f"no sync run {run_id}")
    if run.status != "failed":
        raise Conflict(f"sync run {run_id} is {run.status}; only a failed run is retried")
    client = await _client(ctx)
    workflow_id = retry_run_id(run_id)
    started = await _start_run(
        client,
        ctx.settings,
        workflow_id,
        SyncRunInput(trigger="retry", requested_by=actor.id, retry_of=run_id),
    )
    return {"workflow_id": workflow_id, "started": started, "deduplicated": not started}


def run_view(run: SteveSyncRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "workflow_id": run.workflow_id,
        "trigger": run.trigger,
        "requested_by": run.requested_by,
        "retry_of": run.retry_of,
        "status": run.status,
        "started_at": run.started_at.astimezone(UTC).isoformat(),
        "finished_at": run.finished_at.astimezone(UTC).isoformat() if run.finished_at else None,
        "counters": run.counters,
        "log": run.log,
        "errors": run.errors,
    }


async def list_runs(ctx: ServiceContext, actor: Actor, *, limit: int = 20) -> list[dict[str, Any]]:
    require_admin(actor)
    if not 1 <= limit <= RUNS_MAX:
        raise InvalidInput(
            f"limit must be between 1 and {RUNS_MAX}",
            issues=[{"path": "limit", "message": f"between 1 and {RUNS_MAX}"}],
        )
    async with ctx.sessions() as db:
        rows = await db.scalars(select(SteveSyncRun).order_by(SteveSyncRun.id.desc()).limit(limit))
        return [run_view(r) for r in rows]


async def get_run(ctx: ServiceContext, actor: Actor, run_id: int) -> dict[str, Any]:
    require_admin(actor)
    async with ctx.sessions() as db:
        run = await db.get(SteveSyncRun, run_id)
    if run is None:
        raise NotFound(f"no sync run {run_id}")
    return run_view(run)


async def cadence(ctx: ServiceContext, actor: Actor) -> dict[str, Any]:
    """The scheduler's mode, interval and next run (``running: false`` when it is not started)."""
    require_admin(actor)
    client = await _client(ctx)
    handle: WorkflowHandle[Any, Any] = client.get_workflow_handle(CADENCE_WORKFLOW_ID)
    try:
        status: CadenceStatus = await handle.query(QUERY_CADENCE, result_type=CadenceStatus)
    except RPCError:
        return {"running": False, "configured": bool(ctx.settings.steve_api_url)}
    return {
        "running": True,
        "configured": bool(ctx.settings.steve_api_url),
        **status.model_dump(mode="json"),
    }


async def stale_runs(sessions: SessionFactory, *, older_than: timedelta = STALE_AFTER) -> int:
    """Runs still ``running`` after ``older_than`` (the API's health reports degraded)."""
    async with sessions() as db:
        return int(
            await db.scalar(
                select(func.count())
                .select_from(SteveSyncRun)
                .where(
                    SteveSyncRun.status == "running",
                    SteveSyncRun.started_at < func.now() - older_than,
                )
            )
            or 0
        )
