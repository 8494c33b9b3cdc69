"""Activities of the local-list workflows: PostgreSQL reads and writes of ``charger_local_lists``
(and, for the reconciler, the signals to the per-charger workflows).

All are idempotent: an accepted request is applied only if its ``listVersion`` is above the
recorded one; counters move with ``GREATEST``; the reconciler's signals coalesce in the workflow.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import exists, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from temporalio import activity
from temporalio.client import Client
from temporalio.service import RPCError

from db.engine import SessionFactory
from db.local_list_models import ChargerLocalList
from db.models import Charger, EvCard, UserMapping
from domain.local_list import (
    CardRow,
    LocalList,
    SendLocalListRequest,
    apply_update,
    desired_list,
    digest,
    plan_updates,
)
from workflows.local_list_messages import (
    LOCAL_LIST_SYNC_WORKFLOW,
    SIGNAL_LOCAL_LIST_SYNC,
    LocalListSyncInput,
    LocalListSyncSignal,
    local_list_workflow_id,
)

log = logging.getLogger("polaris.local_lists")

ACTIVITY_PREPARE = "local_list_prepare"
ACTIVITY_RECORD_CONFIG = "local_list_record_config"
ACTIVITY_PLAN = "local_list_plan"
ACTIVITY_RECORD_ACCEPTED = "local_list_record_accepted"
ACTIVITY_FINISH = "local_list_finish"
ACTIVITY_RECORD_CLEAR_CACHE = "local_list_record_clear_cache"
ACTIVITY_DISPATCH = "local_list_dispatch"

# The configuration keys a sync reads once per charger (OCPP 1.6 core + LocalAuthListManagement).
CONFIG_KEYS = [
    "LocalAuthListEnabled",
    "LocalAuthListMaxLength",
    "SendLocalListMaxLength",
    "SupportedFeatureProfiles",
]
FEATURE_PROFILE = "LocalAuthListManagement"


class ChargerRef(BaseModel):
    charge_box_id: str


class SyncFacts(BaseModel):
    known: bool
    connected: bool = False
    task_queue: str | None = None
    supported: bool | None = None
    config_known: bool = False
    list_version: int = 0
    sync_requested: int = 0
    sync_pending: bool = False
    full_requested: bool = False
    # No list was ever established with this charger (first sync).
    never_synced: bool = True
    clear_cache_requested: int = 0
    clear_cache_pending: bool = False


class RecordConfigInput(BaseModel):
    charge_box_id: str
    values: dict[str, str] = Field(default_factory=dict)
    # The charger refused GetConfiguration (its CallError code): defaults apply.
    error: str | None = None


class ConfigOutcome(BaseModel):
    supported: bool | None
    reason: str | None = None


class PlanInput(BaseModel):
    charge_box_id: str
    full: bool


class PlanResult(BaseModel):
    requests: list[SendLocalListRequest]


class RecordAcceptedInput(BaseModel):
    charge_box_id: str
    request: SendLocalListRequest


class FinishInput(BaseModel):
    charge_box_id: str
    # in_step | sent | offline | failed | timed_out | unsupported
    status: str
    error: str | None = None
    # The sync_requested value the round served (None: the round did not serve it).
    served: int | None = None
    clear_full: bool = False
    unsupported_reason: str | None = None


class FinishResult(BaseModel):
    still_pending: bool


class ClearCacheDone(BaseModel):
    charge_box_id: str
    served: int
    status: str


class DispatchResult(BaseModel):
    signalled: list[str] = Field(default_factory=list)
    failed: int = 0


def _now() -> datetime:
    return datetime.now(UTC)


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


async def load_cards(db: Any) -> list[CardRow]:
    """Every card with whether it has an active driver (one query)."""
    mapped = exists().where(UserMapping.id_tag == EvCard.id_tag, UserMapping.is_active)
    rows = (await db.execute(select(EvCard, mapped.label("mapped")))).all()
    return [
        CardRow(
            id_tag=card.id_tag,
            parent_id_tag=card.parent_id_tag,
            is_active=card.is_active,
            blocked=card.blocked,
            expires_at=card.expires_at,
            lost_at=card.lost_at,
            mapped=bool(is_mapped),
        )
        for card, is_mapped in rows
    ]


class LocalListActivities:
    def __init__(self, session_factory: SessionFactory) -> None:
        self._sessions = session_factory

    @activity.defn(name=ACTIVITY_PREPARE)
    async def prepare(self, input: ChargerRef) -> SyncFacts:
        async with self._sessions() as db:
            charger = await db.get(Charger, input.charge_box_id)
            row = await db.get(ChargerLocalList, input.charge_box_id)
        if charger is None:
            return SyncFacts(known=False)
        facts = SyncFacts(
            known=True,
            connected=charger.connected and bool(charger.gateway_instance),
            task_queue=f"gateway-{charger.gateway_instance}" if charger.gateway_instance else None,
        )
        if row is None:
            return facts
        return facts.model_copy(
            update={
                "supported": row.supported,
                "config_known": row.config_checked_at is not None,
                "list_version": row.list_version,
                "sync_requested": row.sync_requested,
                "sync_pending": row.sync_requested > row.sync_done,
                "full_requested": row.full_requested,
                "never_synced": row.entries_digest is None,
                "clear_cache_requested": row.clear_cache_requested,
                "clear_cache_pending": row.clear_cache_requested > row.clear_cache_done,
            }
        )

    @activity.defn(name=ACTIVITY_RECORD_CONFIG)
    async def record_config(self, input: RecordConfigInput) -> ConfigOutcome:
        values = input.values
        enabled = values.get("LocalAuthListEnabled")
        profiles = values.get("SupportedFeatureProfiles")
        supported: bool | None = None
        reason: str | None = None
        if profiles is not None and FEATURE_PROFILE not in {p.strip() for p in profiles.split(",")}:
            supported, reason = False, f"SupportedFeatureProfiles lacks {FEATURE_PROFILE}"
        changes: dict[str, Any] = {
            "enabled": None if enabled is None else enabled.strip().lower() == "true",
            "max_length": _int(values.get("LocalAuthListMaxLength")),
            "send_max_length": _int(values.get("SendLocalListMaxLength")),
            "config_checked_at": _now(),
            "updated_at": _now(),
        }
        if supported is False:
            changes |= {"supported": False, "unsupported_reason": reason}
        async with self._sessions() as db, db.begin():
            await db.execute(
                insert(ChargerLocalList)
                .values(charge_box_id=input.charge_box_id, **changes)
                .on_conflict_do_update(index_elements=["charge_box_id"], set_=changes)
            )
        return ConfigOutcome(supported=supported, reason=reason)

    @activity.defn(name=ACTIVITY_PLAN)
    async def plan(self, input: PlanInput) -> PlanResult:
        async with self._sessions() as db:
            row = await db.get(ChargerLocalList, input.charge_box_id)
            cards = await load_cards(db)
        desired = desired_list(cards, _now(), max_length=row.max_length if row else None)
        requests = plan_updates(
            row.list_version if row else 0,
            row.entries if row else {},
            desired,
            full=input.full,
            send_max_length=row.send_max_length if row else None,
        )
        return PlanResult(requests=requests)

    @activity.defn(name=ACTIVITY_RECORD_ACCEPTED)
    async def record_accepted(self, input: RecordAcceptedInput) -> None:
        async with self._sessions() as db, db.begin():
            row = await db.get(ChargerLocalList, input.charge_box_id, with_for_update=True)
            if row is None:
                row = ChargerLocalList(charge_box_id=input.charge_box_id, list_version=0)
                db.add(row)
                current: LocalList = {}
            else:
                if row.list_version >= input.request.list_version:
                    return  # a retried attempt: already recorded
                current = row.entries
            entries = apply_update(current, input.request)
            row.entries = dict(entries)
            row.entries_digest = digest(entries)
            row.list_version = input.request.list_version
            row.updated_at = _now()

    @activity.defn(name=ACTIVITY_FINISH)
    async def finish(self, input: FinishInput) -> FinishResult:
        now = _now()
        async with self._sessions() as db, db.begin():
            row = await db.get(ChargerLocalList, input.charge_box_id, with_for_update=True)
            if row is None:
                row = ChargerLocalList(charge_box_id=input.charge_box_id)
                db.add(row)
                await db.flush()
                await db.refresh(row)
            row.last_sync_status = input.status
            row.last_sync_at = now
            row.last_sync_error = input.error
            row.updated_at = now
            if input.unsupported_reason is not None:
                row.supported = False
                row.unsupported_reason = input.unsupported_reason[:200]
            elif input.status in ("in_step", "sent"):
                row.supported = True
                row.unsupported_reason = None
                if row.entries_digest is None:
                    # A first sync with nothing to send: what we hold is now established.
                    row.entries_digest = digest(row.entries)
            if input.served is not None:
                row.sync_done = max(row.sync_done, input.served)
            if input.clear_full:
                row.full_requested = False
            return FinishResult(
                still_pending=row.supported is not False
                and (row.sync_requested > row.sync_done or row.full_requested)
            )

    @activity.defn(name=ACTIVITY_RECORD_CLEAR_CACHE)
    async def record_clear_cache(self, input: ClearCacheDone) -> None:
        now = _now()
        async with self._sessions() as db, db.begin():
            await db.execute(
                update(ChargerLocalList)
                .where(ChargerLocalList.charge_box_id == input.charge_box_id)
                .values(
                    clear_cache_done=func.greatest(ChargerLocalList.clear_cache_done, input.served),
                    last_clear_cache_status=input.status,
                    last_clear_cache_at=now,
                    updated_at=now,
                )
            )


# -- the reconciler ----------------------------------------------------------------------------

_ADOPT_CONNECTED = text(
    """
    INSERT INTO charger_local_lists (charge_box_id)
    SELECT charge_box_id FROM chargers WHERE connected ORDER BY charge_box_id
    ON CONFLICT (charge_box_id) DO NOTHING
    """
)


async def out_of_step(db: Any, now: datetime) -> list[tuple[str, bool]]:
    """(chargeBoxId, connected) of every charger with something to do: a pending request, or
    an acknowledged list that is not the desired one (a card expired, a sync was lost)."""
    cards = await load_cards(db)
    wanted: dict[int | None, str] = {}
    rows = (
        await db.execute(
            select(ChargerLocalList, Charger.connected).join(
                Charger, Charger.charge_box_id == ChargerLocalList.charge_box_id
            )
        )
    ).all()
    found: list[tuple[str, bool]] = []
    for row, connected in rows:
        work = row.clear_cache_requested > row.clear_cache_done
        if row.supported is not False:
            if row.max_length not in wanted:
                wanted[row.max_length] = digest(desired_list(cards, now, max_length=row.max_length))
            work = (
                work
                or row.sync_requested > row.sync_done
                or row.full_requested
                or row.entries_digest != wanted[row.max_length]
            )
        if work:
            found.append((row.charge_box_id, bool(connected)))
    return found


class LocalListDispatch:
    """The reconciler's activity: needs the Temporal client to signal-with-start."""

    def __init__(self, client: Client, session_factory: SessionFactory) -> None:
        self._client = client
        self._sessions = session_factory

    @activity.defn(name=ACTIVITY_DISPATCH)
    async def dispatch(self, input: LocalListSyncSignal) -> DispatchResult:
        """Mark out-of-step chargers pending (so the gateway's connect trigger sees offline
        ones) and signal the connected ones' workflows, all at once."""
        async with self._sessions() as db, db.begin():
            await db.execute(_ADOPT_CONNECTED)
            todo = await out_of_step(db, _now())
            idle = [cb for cb, _ in todo]
            if idle:
                # Locked in chargeBoxId order, like the service layer's requests (no deadlock).
                stale = (
                    select(ChargerLocalList.charge_box_id)
                    .where(
                        ChargerLocalList.charge_box_id.in_(idle),
                        ChargerLocalList.sync_requested <= ChargerLocalList.sync_done,
                        ChargerLocalList.supported.is_not(False),
                    )
                    .order_by(ChargerLocalList.charge_box_id)
                    .with_for_update()
                )
                await db.execute(
                    update(ChargerLocalList)
                    .where(ChargerLocalList.charge_box_id.in_(stale.scalar_subquery()))
                    .values(sync_requested=ChargerLocalList.sync_done + 1)
                )
        connected = [cb for cb, online in todo if online]
        task_queue = activity.info().task_queue
        limit = asyncio.Semaphore(16)

        async def signal(charge_box_id: str) -> bool:
            async with limit:
                try:
                    await signal_sync(self._client, task_queue, charge_box_id, input.reason)
                except (RPCError, OSError, RuntimeError) as exc:
                    log.warning("local list of %s not signalled: %r", charge_box_id, exc)
                    return False
                return True

        done = await asyncio.gather(*(signal(cb) for cb in connected))
        return DispatchResult(
            signalled=[cb for cb, ok in zip(connected, done, strict=True) if ok],
            failed=sum(1 for ok in done if not ok),
        )


async def signal_sync(client: Client, task_queue: str, charge_box_id: str, reason: str) -> None:
    """Signal-with-start the charger's LocalListSync workflow (coalesces with a running one)."""
    await client.start_workflow(
        LOCAL_LIST_SYNC_WORKFLOW,
        LocalListSyncInput(charge_box_id=charge_box_id),
        id=local_list_workflow_id(charge_box_id),
        task_queue=task_queue,
        start_signal=SIGNAL_LOCAL_LIST_SYNC,
        start_signal_args=[LocalListSyncSignal(reason=reason)],
        rpc_timeout=timedelta(seconds=10),
    )
