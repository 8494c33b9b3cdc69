"""The segments of a SteVe sync run (``workflows/steve_sync.py``), each one activity that
heartbeats per item, and the run's row (``steve_sync_runs``).

- ``tags``: cards exist on both sides, and the stricter state wins (the mapping rules in
  docs/steve.md): a Polaris card SteVe lacks is created there, a SteVe tag Polaris lacks becomes
  an (unowned) Polaris card; a card blocked, lost or deactivated in Polaris is blocked in SteVe
  (``maxActiveTransactionCount`` 0); a tag blocked or expired in SteVe is blocked in Polaris.
- ``transactions``: a SteVe transaction Polaris does not know (the charger bypassed the relay)
  is journaled under SteVe's id, with its start and, once SteVe has it, its stop, through the
  same outbox rows the gateway writes, so the session workflow runs and bills it, once.
- ``lago_customers`` / ``subscriptions``: owners of SteVe's cards have a Lago customer and an
  active subscription.
- ``invoices``: per such owner, Lago's invoices are read, and unsent billing rows counted.
- ``local_reconcile``: a transaction open in Polaris that SteVe has stopped is closed with
  SteVe's stop values.

Everything here is idempotent: a retried segment, or two runs at once, change nothing twice
(the journal's transaction id and start identity, the deterministic session workflow ids).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.lago import EnsureSubscriptionInput, LagoBilling, UpsertCustomerInput
from activities.lago_client import LagoError
from activities.lago_client import to_application_error as lago_application_error
from activities.lago_reads import list_invoices
from activities.steve import OcppTag, SteveClient, SteveError, SteveTransaction
from config.settings import Settings
from db.engine import SessionFactory
from db.models import AuditLog, BillingEvent, Charger, EvCard, Transaction, UserMapping
from db.steve_models import SteveSyncRun
from gateway.outbox import enqueue
from gateway.stop_checks import read_stop
from gateway.transactions import stop_transaction
from workflows.messages import (
    SIGNAL_TRANSACTION_STARTED,
    SessionInput,
    TransactionStarted,
    charger_workflow_id,
)
from workflows.steve_messages import (
    BeginRunInput,
    FinishRunInput,
    Segment,
    SegmentFailure,
    SegmentInput,
    SegmentResult,
    SyncRunSummary,
)

log = logging.getLogger(__name__)

ACTIVITY_BEGIN_RUN = "steve_sync_begin_run"
ACTIVITY_SEGMENT = "steve_sync_segment"
ACTIVITY_SEGMENT_FAILED = "steve_sync_segment_failed"
ACTIVITY_FINISH_RUN = "steve_sync_finish_run"

ACTOR = "steve-sync"
# SteVe's transactions are read from the last completed run's start minus this margin.
LOOKBACK = timedelta(days=1)

T = TypeVar("T")


def to_application_error(exc: SteveError) -> ApplicationError:
    """SteVe's typed errors as activity failures (credentials never appear in them)."""
    return ApplicationError(exc.message, type=type(exc).__name__, non_retryable=not exc.retryable)


class SteveSyncActivities:
    def __init__(
        self,
        settings: Settings,
        sessions: SessionFactory,
        *,
        steve: Callable[[], SteveClient] | None = None,
        lago: LagoBilling | None = None,
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._steve = steve or self._client
        self._lago = lago

    def _client(self) -> SteveClient:
        settings = self._settings
        if not settings.steve_api_url:
            raise ApplicationError(
                "SteVe is not configured (POLARIS_STEVE_API_URL)",
                type="SteveNotConfigured",
                non_retryable=True,
            )
        password = settings.steve_api_password
        return SteveClient(
            settings.steve_api_url,
            settings.steve_api_user,
            password.get_secret_value() if password else "",
            timeout_s=settings.steve_api_timeout_s,
        )

    def _lago_billing(self) -> LagoBilling:
        if self._lago is None:
            self._lago = LagoBilling(self._settings, self._sessions)
        return self._lago

    # -- the run's row ----------------------------------------------------------------------

    @activity.defn(name=ACTIVITY_BEGIN_RUN)
    async def begin_run(self, input: BeginRunInput) -> int:
        """The run's row (the same one when this activity is retried)."""
        async with self._sessions.begin() as s:
            run_id = await s.scalar(
                pg_insert(SteveSyncRun)
                .values(
                    workflow_id=input.workflow_id,
                    trigger=input.trigger,
                    requested_by=input.requested_by,
                    retry_of=input.retry_of,
                )
                .on_conflict_do_nothing(index_elements=[SteveSyncRun.workflow_id])
                .returning(SteveSyncRun.id)
            )
            if run_id is None:
                run_id = await s.scalar(
                    select(SteveSyncRun.id).where(SteveSyncRun.workflow_id == input.workflow_id)
                )
        assert run_id is not None
        return int(run_id)

    @activity.defn(name=ACTIVITY_SEGMENT)
    async def run_segment(self, input: SegmentInput) -> SegmentResult:
        segments: dict[Segment, Callable[[SegmentResult], Awaitable[None]]] = {
            "tags": self._tags,
            "transactions": self._transactions,
            "lago_customers": self._lago_customers,
            "subscriptions": self._subscriptions,
            "invoices": self._invoices,
            "local_reconcile": self._local_reconcile,
        }
        result = SegmentResult(segment=input.segment)
        try:
            await segments[input.segment](result)
        except SteveError as exc:
            raise to_application_error(exc) from exc
        except LagoError as exc:
            raise lago_application_error(exc) from exc
        await self._record(input.run_id, input.segment, result, error=None)
        return result

    @activity.defn(name=ACTIVITY_SEGMENT_FAILED)
    async def segment_failed(self, input: SegmentFailure) -> None:
        failed = SegmentResult(segment=input.segment)
        error = {"segment": input.segment, "error": input.error, "type": input.error_type}
        await self._record(input.run_id, input.segment, failed, error=error)

    @activity.defn(name=ACTIVITY_FINISH_RUN)
    async def finish_run(self, input: FinishRunInput) -> SyncRunSummary:
        async with self._sessions.begin() as s:
            run = await s.get(SteveSyncRun, input.run_id, with_for_update=True)
            assert run is not None
            failed = [e["segment"] for e in run.log if e.get("status") == "failed"]
            changes = sum(int(e.get("changes") or 0) for e in run.log)
            if run.status == "running":
                run.status = "failed" if failed else "completed"
                run.finished_at = datetime.now(UTC)
            return SyncRunSummary(
                run_id=run.id,
                status="failed" if run.status == "failed" else "completed",
                changes=changes,
                failed_segments=failed,
            )

    async def _record(
        self, run_id: int, segment: Segment, result: SegmentResult, *, error: dict[str, Any] | None
    ) -> None:
        """The segment's log entry, counters and errors (replacing a retried segment's own)."""
        entry = {
            "segment": segment,
            "status": "failed" if error else "completed",
            "at": datetime.now(UTC).isoformat(),
            "changes": result.changes,
            "counters": result.counters,
        }
        errors = [{"segment": segment, **e} for e in result.errors]
        if error is not None:
            errors.append(error)
        async with self._sessions.begin() as s:
            run = await s.get(SteveSyncRun, run_id, with_for_update=True)
            assert run is not None
            run.log = [e for e in run.log if e.get("segment") != segment] + [entry]
            run.counters = {**run.counters, segment: result.counters}
            run.errors = [e for e in run.errors if e.get("segment") != segment] + errors

    # -- tags -------------------------------------------------------------------------------

    async def _tags(self, result: SegmentResult) -> None:
        now = datetime.now(UTC)
        counters = dict.fromkeys(
            ("seen", "created_in_steve", "blocked_in_steve", "created_in_polaris"), 0
        )
        counters["blocked_in_polaris"] = 0
        async with self._steve() as steve:
            steve_tags = {t.id_tag: t for t in await steve.list_tags()}
            async with self._sessions() as db:
                cards = {c.id_tag: c for c in await db.scalars(select(EvCard))}
            for id_tag, card in cards.items():
                activity.heartbeat(id_tag)
                tag = steve_tags.get(id_tag)
                stopped = card.blocked or card.lost_at is not None or not card.is_active
                if tag is None:
                    created = await steve.create_tag(
                        id_tag,
                        parent_id_tag=card.parent_id_tag
                        if card.parent_id_tag in cards and card.parent_id_tag in steve_tags
                        else None,
                        expiry_date=card.expires_at,
                        max_active_transactions=0 if stopped else card.max_concurrent_sessions,
                        note="from Polaris",
                    )
                    steve_tags[id_tag] = created
                    counters["created_in_steve"] += 1
                elif stopped and not tag.blocked:
                    await steve.update_tag(
                        tag.pk,
                        id_tag,
                        parent_id_tag=tag.parent_id_tag,
                        expiry_date=tag.expiry_date,
                        max_active_transactions=0,
                        note=tag.note,
                    )
                    counters["blocked_in_steve"] += 1
            for id_tag, tag in steve_tags.items():
                activity.heartbeat(id_tag)
                counters["seen"] += 1
                if id_tag in cards:
                    card = cards[id_tag]
                    if (tag.blocked or tag.expired(now)) and not card.blocked:
                        await self._block_card(id_tag, tag, now)
                        counters["blocked_in_polaris"] += 1
                    continue
                if await self._create_card(tag, now):
                    counters["created_in_polaris"] += 1
        result.counters = counters
        result.changes = sum(v for k, v in counters.items() if k != "seen")

    async def _create_card(self, tag: OcppTag, now: datetime) -> bool:
        if len(tag.id_tag) > 20:
            return False  # OCPP 1.6 idTags are at most 20 characters
        blocked = tag.blocked or tag.expired(now)
        async with self._sessions.begin() as s:
            parent = tag.parent_id_tag
            if parent is not None and await s.get(EvCard, parent) is None:
                parent = None
            created = await s.scalar(
                pg_insert(EvCard)
                .values(
                    id_tag=tag.id_tag,
                    parent_id_tag=parent,
                    label="from SteVe",
                    is_active=True,
                    blocked=blocked,
                    expires_at=tag.expiry_date,
                    max_concurrent_sessions=max(tag.max_active_transactions or 1, 1),
                )
                .on_conflict_do_nothing(index_elements=[EvCard.id_tag])
                .returning(EvCard.id_tag)
            )
            if created is None:
                return False
            await s.execute(
                insert(AuditLog).values(
                    actor=ACTOR,
                    action="card.imported_from_steve",
                    subject=tag.id_tag,
                    details={"steve_tag_pk": tag.pk, "blocked": blocked},
                )
            )
        return True

    async def _block_card(self, id_tag: str, tag: OcppTag, now: datetime) -> None:
        async with self._sessions.begin() as s:
            await s.execute(update(EvCard).where(EvCard.id_tag == id_tag).values(blocked=True))
            await s.execute(
                insert(AuditLog).values(
                    actor=ACTOR,
                    action="card.blocked_from_steve",
                    subject=id_tag,
                    details={
                        "steve_tag_pk": tag.pk,
                        "why": "blocked in SteVe" if tag.blocked else "expired in SteVe",
                    },
                )
            )

    # -- transactions: SteVe → Polaris ------------------------------------------------------

    async def _transactions(self, result: SegmentResult) -> None:
        now = datetime.now(UTC)
        counters = dict.fromkeys(
            ("seen", "known", "imported", "stopped", "unknown_charger", "conflicts"), 0
        )
        async with self._sessions() as db:
            since = await db.scalar(
                select(func.max(SteveSyncRun.started_at)).where(SteveSyncRun.status == "completed")
            )
            chargers = set(await db.scalars(select(Charger.charge_box_id)))
        async with self._steve() as steve:
            if since is None:
                rows = await steve.list_transactions()
            else:
                rows = await steve.list_transactions(
                    started_from=since - LOOKBACK, started_to=now + LOOKBACK
                )
        for tx in rows:
            activity.heartbeat(tx.id)
            counters["seen"] += 1
            if tx.charge_box_id not in chargers:
                counters["unknown_charger"] += 1
                continue
            outcome = await self._import(tx, now)
            counters[outcome] += 1
            if outcome == "conflicts":
                result.errors.append(
                    {
                        "item": f"transaction {tx.id}",
                        "error": "Polaris has this transaction id for another start "
                        "(see docs/steve.md, 'Transaction ids')",
                    }
                )
            elif outcome == "imported" and tx.stopped_at is not None and await self._close(tx, now):
                counters["stopped"] += 1
        result.counters = counters
        result.changes = counters["imported"] + counters["stopped"]

    async def _import(self, tx: SteveTransaction, now: datetime) -> str:
        """Journal SteVe's start under SteVe's id: "imported", "known" or "conflicts"."""
        async with self._sessions.begin() as s:
            same_id = await s.get(Transaction, tx.id)
            if same_id is not None:
                same = (
                    same_id.charge_box_id == tx.charge_box_id
                    and same_id.connector_id == tx.connector_id
                )
                return "known" if same else "conflicts"
            workflow_id = charger_workflow_id(
                tx.charge_box_id, tx.connector_id, tx.started_at, tx.start_wh
            )
            owner = await s.scalar(
                select(UserMapping.user_id).where(
                    UserMapping.id_tag == tx.id_tag, UserMapping.is_active
                )
            )
            # SteVe accepted this start when it happened: it is journaled as it was.
            created = await s.scalar(
                pg_insert(Transaction)
                .values(
                    id=tx.id,
                    charge_box_id=tx.charge_box_id,
                    connector_id=tx.connector_id,
                    id_tag=tx.id_tag,
                    workflow_id=workflow_id,
                    auth_status="Accepted",
                    meter_start_wh=tx.start_wh,
                    started_at=tx.started_at,
                    owner_user_id=owner,
                )
                .on_conflict_do_nothing()
                .returning(Transaction.id)
            )
            if created is None:
                return "conflicts"  # the same start is journaled under another id
            await s.execute(
                text(
                    "SELECT setval('transaction_id_seq', GREATEST(:id, "
                    "(SELECT last_value FROM transaction_id_seq)))"
                ),
                {"id": tx.id},
            )
            await enqueue(
                s,
                workflow_id=workflow_id,
                kind=SIGNAL_TRANSACTION_STARTED,
                start=SessionInput(
                    charge_box_id=tx.charge_box_id,
                    connector_id=tx.connector_id,
                    id_tag=tx.id_tag,
                    origin="charger",
                    requested_at=tx.started_at,
                ),
                signal=TransactionStarted(
                    event_id=0,
                    transaction_id=tx.id,
                    charge_box_id=tx.charge_box_id,
                    connector_id=tx.connector_id,
                    id_tag=tx.id_tag,
                    meter_start_wh=tx.start_wh,
                    started_at=tx.started_at,
                    auth_status="Accepted",
                    user_id=owner,
                ),
            )
            await s.execute(
                insert(AuditLog).values(
                    actor=ACTOR,
                    action="transaction.imported_from_steve",
                    subject=tx.charge_box_id,
                    details={"transaction_id": tx.id, "workflow_id": workflow_id},
                )
            )
        log.info("SteVe transaction %s on %s imported", tx.id, tx.charge_box_id)
        return "imported"

    async def _close(self, tx: SteveTransaction, now: datetime) -> bool:
        """Journal SteVe's stop (the same path as a StopTransaction); True if it closed one."""
        assert tx.stopped_at is not None
        limits = self._settings.meter_limits
        stop = read_stop(tx.stop_wh or tx.start_wh, tx.stopped_at, [], limits=limits, now=now)
        outcome = await stop_transaction(
            self._sessions,
            charge_box_id=tx.charge_box_id,
            transaction_id=tx.id,
            stop=stop,
            reason=tx.stop_reason or "Other",
            id_tag=None,
            raw_payload={"source": "steve", "stopValue": tx.stop_wh, "stopReason": tx.stop_reason},
            progress_gate=lambda _tx, _final: True,
            limits=limits,
            now=now,
        )
        return outcome.kind == "stopped"

    # -- local reconcile: Polaris-open, SteVe-stopped ---------------------------------------

    async def _local_reconcile(self, result: SegmentResult) -> None:
        now = datetime.now(UTC)
        counters = dict.fromkeys(("open_in_polaris", "stopped_in_steve", "closed"), 0)
        async with self._sessions() as db:
            open_rows = (
                await db.execute(
                    select(Transaction.id, Transaction.charge_box_id).where(
                        Transaction.stopped_at.is_(None)
                    )
                )
            ).all()
        counters["open_in_polaris"] = len(open_rows)
        mine = {int(r.id): r.charge_box_id for r in open_rows}
        async with self._steve() as steve:
            ids = sorted(mine)
            found: list[SteveTransaction] = []
            for start in range(0, len(ids), 100):
                activity.heartbeat(start)
                found += await steve.list_transactions(kind="STOPPED", ids=ids[start : start + 100])
        for tx in found:
            activity.heartbeat(tx.id)
            if mine.get(tx.id) != tx.charge_box_id or tx.stopped_at is None:
                continue
            counters["stopped_in_steve"] += 1
            if await self._close(tx, now):
                counters["closed"] += 1
        result.counters = counters
        result.changes = counters["closed"]

    # -- Lago -------------------------------------------------------------------------------

    async def _owners(self) -> list[UserMapping]:
        """Active card owners whose card is known to SteVe."""
        async with self._steve() as steve:
            tags = {t.id_tag for t in await steve.list_tags()}
        async with self._sessions() as db:
            rows = list(await db.scalars(select(UserMapping).where(UserMapping.is_active)))
        return [m for m in rows if m.id_tag in tags]

    async def _lago_customers(self, result: SegmentResult) -> None:
        counters = dict.fromkeys(("owners", "created"), 0)
        lago = self._lago_billing()
        done: set[str] = set()
        for m in await self._owners():
            activity.heartbeat(m.public_id)
            if m.public_id in done:
                continue
            done.add(m.public_id)
            counters["owners"] += 1
            if m.lago_customer_external_id:
                continue
            await lago.upsert_customer(
                UpsertCustomerInput(
                    public_id=m.public_id, name=m.email or m.public_id, email=m.email
                )
            )
            counters["created"] += 1
        result.counters = counters
        result.changes = counters["created"]

    async def _subscriptions(self, result: SegmentResult) -> None:
        counters = dict.fromkeys(("owners", "ensured"), 0)
        lago = self._lago_billing()
        done: set[str] = set()
        for m in await self._owners():
            activity.heartbeat(m.public_id)
            if m.public_id in done or m.billing_mode != "usage":
                continue
            done.add(m.public_id)
            counters["owners"] += 1
            if m.lago_subscription_external_id:
                continue
            await lago.ensure_subscription(EnsureSubscriptionInput(public_id=m.public_id))
            counters["ensured"] += 1
        result.counters = counters
        result.changes = counters["ensured"]

    async def _invoices(self, result: SegmentResult) -> None:
        counters = dict.fromkeys(("customers", "invoices", "unsent_billing_rows"), 0)
        lago = self._lago_billing()
        owners = {m.public_id: m for m in await self._owners() if m.lago_customer_external_id}
        for public_id, m in owners.items():
            activity.heartbeat(public_id)
            counters["customers"] += 1
            page = await list_invoices(lago._client, m.lago_customer_external_id or public_id)
            counters["invoices"] += int(page.total_count or len(page.invoices))
        if owners:
            async with self._sessions() as db:
                users = {m.user_id for m in owners.values()}
                counters["unsent_billing_rows"] = int(
                    await db.scalar(
                        select(func.count())
                        .select_from(BillingEvent)
                        .join(Transaction, Transaction.workflow_id == BillingEvent.workflow_id)
                        .where(BillingEvent.sent_at.is_(None), Transaction.owner_user_id.in_(users))
                    )
                    or 0
                )
        result.counters = counters
