"""The transaction journal: StartTransaction and StopTransaction, each with its outbox row in
the same database transaction (the outage guarantee)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from db.engine import SessionFactory
from db.models import OrphanStop, Transaction, session_intents
from domain.energy import MeterLimits
from gateway import event_routes, intents, load_trigger
from gateway.closures import close_for_new_transaction
from gateway.local_auth import decide
from gateway.metering import store_samples
from gateway.outbox import enqueue
from gateway.reservation_join import enqueue_join
from gateway.stop_checks import EdgeStop, VettedStop, vet_stop
from workflows.messages import (
    SIGNAL_TRANSACTION_STARTED,
    SIGNAL_TRANSACTION_STOPPED,
    AuthorizationStatus,
    SessionInput,
    SessionOrigin,
    TransactionStarted,
    TransactionStopped,
    charger_workflow_id,
)

_STRICTNESS: dict[str, int] = {
    "Accepted": 0,
    "ConcurrentTx": 1,
    "Expired": 2,
    "Invalid": 3,
    "Blocked": 4,
}


def tighter(a: AuthorizationStatus, b: str) -> AuthorizationStatus:
    """The stricter of two statuses (pre-authorization may only tighten the local decision)."""
    if b in _STRICTNESS and _STRICTNESS[b] > _STRICTNESS[a]:
        return b  # type: ignore[return-value]
    return a


@dataclass(frozen=True, slots=True)
class StartOutcome:
    transaction_id: int
    workflow_id: str
    auth_status: AuthorizationStatus
    created: bool
    parent_id_tag: str | None
    expiry_date: datetime | None


async def start_transaction(
    sf: SessionFactory,
    *,
    charge_box_id: str,
    connector_id: int,
    id_tag: str,
    meter_start_wh: int,
    started_at: datetime,
    reservation_id: int | None,
    now: datetime,
    transaction_id: int | None = None,
    upstream_status: str | None = None,
) -> StartOutcome:
    """``transaction_id``: the id another central system gave this start (SteVe relay mode,
    ``gateway/steve_relay.py``) instead of one from our sequence; ``upstream_status`` its
    authorization answer, which may only tighten ours."""
    async with sf.begin() as s:
        identity = (
            Transaction.charge_box_id == charge_box_id,
            Transaction.connector_id == connector_id,
            Transaction.started_at == started_at,
            Transaction.meter_start_wh == meter_start_wh,
        )
        existing = (await s.execute(select(Transaction).where(*identity))).scalar_one_or_none()
        if existing is not None:
            # A resend (the charger never saw our answer): same id, nothing new to tell.
            decision = await decide(s, id_tag, now, check_concurrency=False)
            return StartOutcome(
                existing.id,
                existing.workflow_id,
                existing.auth_status,  # type: ignore[arg-type]
                False,
                decision.parent_id_tag,
                decision.expiry_date,
            )
        intent = await intents.take(
            s, charge_box_id=charge_box_id, id_tag=id_tag, connector_id=connector_id, now=now
        )
        origin: SessionOrigin = "charger"
        if intent is not None and (intent.origin == "remote" or intent.auth_status == "Accepted"):
            workflow_id = intent.workflow_id
            origin = "remote" if intent.origin == "remote" else "tap"
        else:
            # No tap, or a tap whose workflow refused the card (in time or late,
            # gateway/late_refusal.py): that workflow has ended, so a start the charger makes
            # anyway is a session of its own, flagged start_refused (the refusal tightens it below).
            workflow_id = charger_workflow_id(
                charge_box_id, connector_id, started_at, meter_start_wh
            )
        # Whatever still runs on this connector was forgotten by the charger: close it first,
        # so it no longer counts against any card.
        await close_for_new_transaction(
            s, charge_box_id=charge_box_id, connector_id=connector_id, now=now
        )
        # The card's real status, its limit counted under the card's lock (shared with
        # Authorize and pre-authorization) and held until this row is committed.
        decision = await decide(s, id_tag, now, exclude_workflow_id=workflow_id)
        status: AuthorizationStatus = decision.status
        if intent is not None:
            status = tighter(status, intent.auth_status)
        if upstream_status is not None:
            status = tighter(status, upstream_status)
        owner = decision.user_id
        tx_id = await s.scalar(
            pg_insert(Transaction)
            .values(
                **({"id": transaction_id} if transaction_id is not None else {}),
                charge_box_id=charge_box_id,
                connector_id=connector_id,
                id_tag=id_tag,
                workflow_id=workflow_id,
                auth_status=status,
                meter_start_wh=meter_start_wh,
                started_at=started_at,
                reservation_id=reservation_id,
                owner_user_id=owner,
            )
            .on_conflict_do_nothing(constraint="uq_transactions_start_identity")
            .returning(Transaction.id)
        )
        if tx_id is None:
            raise RuntimeError("concurrent identical StartTransaction; the charger will retry")
        if transaction_id is not None:
            # Our own ids continue above every id another central system gave us.
            await s.execute(
                text(
                    "SELECT setval('transaction_id_seq', GREATEST(:id, "
                    "(SELECT last_value FROM transaction_id_seq)))"
                ),
                {"id": transaction_id},
            )
        if intent is not None:
            await s.execute(
                update(session_intents)
                .where(session_intents.c.id == intent.id)
                .values(transaction_id=tx_id)
            )
        await enqueue(
            s,
            workflow_id=workflow_id,
            kind=SIGNAL_TRANSACTION_STARTED,
            start=SessionInput(
                charge_box_id=charge_box_id,
                connector_id=connector_id,
                id_tag=id_tag,
                origin=origin,
                requested_at=started_at,
            ),
            signal=TransactionStarted(
                event_id=0,
                transaction_id=tx_id,
                charge_box_id=charge_box_id,
                connector_id=connector_id,
                id_tag=id_tag,
                meter_start_wh=meter_start_wh,
                started_at=started_at,
                auth_status=status,
                user_id=owner,
            ),
        )
        # A start that uses a reservation tells that reservation's workflow (same transaction).
        await enqueue_join(
            s,
            charge_box_id=charge_box_id,
            connector_id=connector_id,
            id_tag=id_tag,
            reservation_id=reservation_id,
            started_at=started_at,
            transaction_id=tx_id,
            session_workflow_id=workflow_id,
        )
        # A site with a power limit divides it again (its SiteLoad workflow).
        await load_trigger.enqueue_if_limited(s, charge_box_id, "started")
        # Workflows that want to know a charger is active (SteVe's Adaptive Cadence).
        if event_routes.subscribers(event_routes.CHARGER_ACTIVITY):
            await event_routes.publish(
                s,
                event_routes.CHARGER_ACTIVITY,
                {
                    "charge_box_id": charge_box_id,
                    "connector_id": connector_id,
                    "transaction_id": int(tx_id),
                    "at": started_at.isoformat(),
                },
            )
    return StartOutcome(
        int(tx_id), workflow_id, status, True, decision.parent_id_tag, decision.expiry_date
    )


@dataclass(frozen=True, slots=True)
class StopOutcome:
    kind: Literal["stopped", "repeat", "orphan"]
    workflow_id: str | None


async def stop_transaction(
    sf: SessionFactory,
    *,
    charge_box_id: str,
    transaction_id: int,
    stop: EdgeStop,
    reason: str | None,
    id_tag: str | None,
    raw_payload: dict[str, Any],
    progress_gate: Callable[[int, bool], bool],
    limits: MeterLimits,
    now: datetime,
) -> StopOutcome:
    samples = stop.samples
    async with sf.begin() as s:
        open_tx = (
            await s.execute(
                select(Transaction)
                .where(
                    Transaction.id == transaction_id,
                    Transaction.charge_box_id == charge_box_id,
                    Transaction.stopped_at.is_(None),
                )
                .with_for_update()
            )
        ).scalar_one_or_none()
        row: Transaction | None = None
        vetted: VettedStop | None = None
        if open_tx is not None:
            vetted = await vet_stop(s, open_tx, stop, limits=limits, now=now)
            row = (
                await s.execute(
                    update(Transaction)
                    .where(Transaction.id == open_tx.id)
                    .values(
                        meter_stop_wh=vetted.meter_stop_wh,
                        stopped_at=vetted.stopped_at,
                        stop_reason=reason,
                        stop_id_tag=id_tag,
                        stop_flags=vetted.flags or None,
                        stop_payload=raw_payload if vetted.flags else None,
                    )
                    .returning(Transaction)
                    .execution_options(populate_existing=True)
                )
            ).scalar_one()
        if row is None or vetted is None:
            known = await s.scalar(
                select(Transaction.workflow_id).where(
                    Transaction.id == transaction_id, Transaction.charge_box_id == charge_box_id
                )
            )
            if known is not None:
                return StopOutcome("repeat", known)
            seen = await s.scalar(
                select(OrphanStop.id).where(
                    OrphanStop.charge_box_id == charge_box_id,
                    OrphanStop.transaction_id == transaction_id,
                )
            )
            if seen is None:
                await s.execute(
                    insert(OrphanStop).values(
                        charge_box_id=charge_box_id,
                        transaction_id=transaction_id,
                        payload=raw_payload,
                    )
                )
            return StopOutcome("orphan", None)
        if samples:
            await store_samples(
                s,
                charge_box_id=charge_box_id,
                connector_id=row.connector_id,
                tx=row,
                transaction_id=row.id,
                samples=samples,
                progress_gate=progress_gate,
                limits=limits,
            )
        await enqueue(
            s,
            workflow_id=row.workflow_id,
            kind=SIGNAL_TRANSACTION_STOPPED,
            start=SessionInput(
                charge_box_id=charge_box_id,
                connector_id=row.connector_id,
                id_tag=row.id_tag,
                origin="charger",
            ),
            signal=TransactionStopped(
                event_id=0,
                transaction_id=row.id,
                meter_stop_wh=vetted.meter_stop_wh,
                stopped_at=vetted.stopped_at,
                reason=reason,
                id_tag=id_tag,
                flags=vetted.flags,
            ),
        )
        await load_trigger.enqueue_if_limited(s, charge_box_id, "stopped")
    return StopOutcome("stopped", row.workflow_id)
