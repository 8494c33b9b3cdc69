"""Local authorization lists: what each charger holds, and the triggers that keep it in step.

- :func:`cards_changed` — after a card's commit (created, updated, blocked, unlinked): every
  charger that may support the list gets a pending sync, and this task queue's reconciler is
  woken; it signals the connected chargers' ``LocalListSync`` workflows at once.
- :func:`card_lost` — the same, and a ``ClearCache`` for every charger (connected now, or when
  it next connects).
- :func:`request_sync` — an operator's forced Full update of one charger (which also probes
  its support again) or of all of them.
- :func:`show` — one charger's acknowledged list, support, limits and last sync.

Durability: the request is a counter in ``charger_local_lists`` (PostgreSQL) before any signal
is tried. Temporal down → the signal fails (logged), the counter stays; the reconciler (every
five minutes, and at each wake-up) finds every pending or out-of-step charger, and a charger
that is offline is synced by the gateway's connect trigger. Nothing depends on the signal.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import func, select, text, update
from temporalio.service import RPCError

from activities.local_lists import load_cards, signal_sync
from db.audit import add_audit
from db.local_list_models import ChargerLocalList
from db.models import Charger
from domain.local_list import desired_list, digest
from services.actor import Actor
from services.context import ServiceContext
from services.errors import NotFound
from workflows.local_list_messages import (
    LOCAL_LIST_RECONCILE_WORKFLOW,
    SIGNAL_LOCAL_LIST_WAKE,
    LocalListReconcileInput,
    LocalListWake,
    local_list_workflow_id,
    reconcile_workflow_id,
)

log = logging.getLogger("polaris.services.local_lists")

SIGNAL_TIMEOUT_S = 5.0
# A round that ended like this leaves the request pending (retried later); waiting stops.
GAVE_UP = frozenset({"offline", "failed", "timed_out"})

# Rows are locked in chargeBoxId order (as the reconciler does), so two requests never deadlock.
# Every charger gets a row; one that said NotSupported keeps its counters (it is skipped), but
# still gets ClearCache (the authorization cache is not the local list).
_REQUEST_ALL = text(
    """
    INSERT INTO charger_local_lists (charge_box_id, sync_requested, full_requested,
                                     clear_cache_requested)
    SELECT charge_box_id, 1, :full, :clear_cache FROM chargers ORDER BY charge_box_id
    ON CONFLICT (charge_box_id) DO UPDATE SET
      sync_requested = CASE WHEN charger_local_lists.supported IS DISTINCT FROM false
                            THEN charger_local_lists.sync_requested + 1
                            ELSE charger_local_lists.sync_requested END,
      full_requested = charger_local_lists.full_requested
                       OR (:full AND charger_local_lists.supported IS DISTINCT FROM false),
      clear_cache_requested = charger_local_lists.clear_cache_requested + :clear_cache,
      updated_at = now()
    """
)


class LocalListView(BaseModel):
    """One charger's local list as acknowledged, and its sync state."""

    charge_box_id: str
    workflow_id: str
    connected: bool
    # None: not known yet; False: NotSupported/NotImplemented (skipped).
    supported: bool | None
    unsupported_reason: str | None
    enabled: bool | None
    max_length: int | None
    send_max_length: int | None
    list_version: int
    entry_count: int
    # The acknowledged list is the one the cards give now.
    in_step: bool
    desired_entry_count: int
    sync_pending: bool
    clear_cache_pending: bool
    last_sync_status: str | None
    last_sync_at: datetime | None
    last_sync_error: str | None
    last_clear_cache_status: str | None
    last_clear_cache_at: datetime | None
    # {"idTag", "status", "expiryDate"?, "parentIdTag"?} in OCPP's field names.
    entries: list[dict[str, str]]


class SyncRequested(BaseModel):
    charge_box_id: str | None
    workflow_id: str | None
    update_type: str
    # The charger's sync_requested counter after this request (None for every charger).
    requested: int | None
    requested_at: datetime
    # False: Temporal was not reachable; the request waits in PostgreSQL for the reconciler.
    signalled: bool


async def cards_changed(
    ctx: ServiceContext,
    id_tags: Sequence[str],
    *,
    clear_cache: bool = False,
    reason: str = "cards_changed",
) -> None:
    """Called after the card change is committed; never raises (the change stands, and what
    could not be recorded or signalled now the reconciler finds later by comparing lists)."""
    try:
        async with ctx.sessions() as db, db.begin():
            await db.execute(_REQUEST_ALL, {"full": False, "clear_cache": 1 if clear_cache else 0})
    except Exception:
        log.exception("local-list sync for %d card(s) not recorded", len(id_tags))
    await wake_reconciler(ctx, reason)


async def card_lost(ctx: ServiceContext, id_tag: str) -> None:
    """Push the lost card (now Blocked) to every charger and clear their caches."""
    await cards_changed(ctx, [id_tag], clear_cache=True, reason="card_lost")


async def wake_reconciler(ctx: ServiceContext, reason: str) -> bool:
    """Signal-with-start this task queue's reconciler; False (logged) if Temporal is away."""
    queue = ctx.settings.temporal_task_queue
    try:
        client = await asyncio.wait_for(ctx.temporal(), SIGNAL_TIMEOUT_S)
        await client.start_workflow(
            LOCAL_LIST_RECONCILE_WORKFLOW,
            LocalListReconcileInput(),
            id=reconcile_workflow_id(queue),
            task_queue=queue,
            start_signal=SIGNAL_LOCAL_LIST_WAKE,
            start_signal_args=[LocalListWake(reason=reason)],
            rpc_timeout=timedelta(seconds=SIGNAL_TIMEOUT_S),
        )
    except (RPCError, OSError, RuntimeError, TimeoutError) as exc:
        log.warning("local-list reconciler not woken (%s): %r", reason, exc)
        return False
    return True


async def request_sync(
    ctx: ServiceContext, actor: Actor, charge_box_id: str | None
) -> SyncRequested:
    """A forced Full update of one charger (``None``: every charger). For one charger its
    support is probed again (a charger once NotSupported may have been upgraded)."""
    requested_at = datetime.now(UTC)
    async with ctx.sessions() as db, db.begin():
        if charge_box_id is None:
            await db.execute(_REQUEST_ALL, {"full": True, "clear_cache": 0})
            seq = None
        else:
            if await db.get(Charger, charge_box_id) is None:
                raise NotFound(f"no charger {charge_box_id!r}")
            await db.execute(
                text(
                    "INSERT INTO charger_local_lists (charge_box_id) VALUES (:id) "
                    "ON CONFLICT (charge_box_id) DO NOTHING"
                ),
                {"id": charge_box_id},
            )
            seq = await db.scalar(
                update(ChargerLocalList)
                .where(ChargerLocalList.charge_box_id == charge_box_id)
                .values(
                    sync_requested=ChargerLocalList.sync_requested + 1,
                    full_requested=True,
                    supported=None,
                    unsupported_reason=None,
                    config_checked_at=None,
                    updated_at=func.now(),
                )
                .returning(ChargerLocalList.sync_requested)
            )
        add_audit(
            db,
            actor.id,
            "local_list.sync_requested",
            subject=charge_box_id or "*",
            source=actor.source,
            details={"full": True, "all": charge_box_id is None},
        )
    if charge_box_id is None:
        signalled = await wake_reconciler(ctx, "forced")
    else:
        signalled = await _signal_one(ctx, charge_box_id)
    return SyncRequested(
        charge_box_id=charge_box_id,
        workflow_id=local_list_workflow_id(charge_box_id) if charge_box_id else None,
        update_type="Full",
        requested=seq,
        requested_at=requested_at,
        signalled=signalled,
    )


async def _signal_one(ctx: ServiceContext, charge_box_id: str) -> bool:
    try:
        client = await asyncio.wait_for(ctx.temporal(), SIGNAL_TIMEOUT_S)
        await signal_sync(client, ctx.settings.temporal_task_queue, charge_box_id, "forced")
    except (RPCError, OSError, RuntimeError, TimeoutError) as exc:
        log.warning("local-list sync of %s not signalled: %r", charge_box_id, exc)
        return False
    return True


async def show(ctx: ServiceContext, charge_box_id: str) -> LocalListView:
    async with ctx.sessions() as db:
        charger = await db.get(Charger, charge_box_id)
        if charger is None:
            raise NotFound(f"no charger {charge_box_id!r}")
        row = await db.get(ChargerLocalList, charge_box_id)
        cards = await load_cards(db)
    desired = desired_list(cards, datetime.now(UTC), max_length=row.max_length if row else None)
    entries: dict[str, dict[str, str]] = dict(row.entries) if row else {}
    return LocalListView(
        charge_box_id=charge_box_id,
        workflow_id=local_list_workflow_id(charge_box_id),
        connected=charger.connected,
        supported=row.supported if row else None,
        unsupported_reason=row.unsupported_reason if row else None,
        enabled=row.enabled if row else None,
        max_length=row.max_length if row else None,
        send_max_length=row.send_max_length if row else None,
        list_version=row.list_version if row else 0,
        entry_count=len(entries),
        in_step=row is not None and row.entries_digest == digest(desired),
        desired_entry_count=len(desired),
        sync_pending=bool(row and (row.sync_requested > row.sync_done or row.full_requested)),
        clear_cache_pending=bool(row and row.clear_cache_requested > row.clear_cache_done),
        last_sync_status=row.last_sync_status if row else None,
        last_sync_at=row.last_sync_at if row else None,
        last_sync_error=row.last_sync_error if row else None,
        last_clear_cache_status=row.last_clear_cache_status if row else None,
        last_clear_cache_at=row.last_clear_cache_at if row else None,
        entries=[{"idTag": tag, **info} for tag, info in sorted(entries.items())],
    )


async def wait_for_sync(
    ctx: ServiceContext, charge_box_id: str, requested_at: datetime, timeout_s: float
) -> LocalListView:
    """Poll until a sync round finished after ``requested_at`` (or the timeout); the view."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        async with ctx.sessions() as db:
            row = await db.scalar(
                select(ChargerLocalList).where(ChargerLocalList.charge_box_id == charge_box_id)
            )
        finished = (
            row is not None
            and row.last_sync_at is not None
            and row.last_sync_at >= requested_at
            and (not row.full_requested or row.last_sync_status in GAVE_UP)
        )
        if finished or loop.time() >= deadline:
            return await show(ctx, charge_box_id)
        await asyncio.sleep(0.5)
