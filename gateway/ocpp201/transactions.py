"""TransactionEvent (OCPP 2.0.1) onto our transaction journal: one database transaction per
event, the same outbox rows (so the same session signals) as 1.6.

1. The event is journaled in ``ocpp201_transaction_events``, unique on (charger, transactionId,
   seqNo). A resend (the charger never saw our answer) is answered the same and changes nothing.
2. The charger's transaction is ``ocpp201_transactions`` (created by whichever event arrives
   first: offline replays may come in any order). Its state only moves forward: an event with a
   lower seqNo than one already applied is journaled and its samples stored, never moves the
   charging state back. Events after ``Ended`` are answered and journaled, nothing else.
3. **Binding.** A transaction may start at plug-in without an idToken. It is bound to a session
   at the first event that has (a) an idToken whose card is known (or the start button on a
   free-vend charger) or a ``remoteStartId`` naming one of our remote-start intents, and (b) a
   start register (``Transaction.Begin``, else the lowest good register seen), or at ``Ended``.
   Binding writes the ``transactions`` row (our integer id; ``ocpp_transaction_id`` = the
   charger's string) and the ``transaction_started`` outbox row, as a 1.6 StartTransaction does.
4. Registers go through the 1.6 path (``metering.store_samples``: window, monotonicity,
   plausibility, throttled ``meter_progress``); ``chargingState`` changes become
   ``connector_status`` signals (Charging / SuspendedEV / SuspendedEVSE are the 1.6 strings).
5. ``Ended``: ``transaction_stopped`` with the ``Transaction.End`` register (else the last good
   one), ``stoppedReason`` or ``Local``. A transaction that ends never authorized is journaled and
   flagged ``unauthorized``; no session, no bill.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.engine import SessionFactory
from db.models import Transaction, UserMapping, session_intents
from db.ocpp201_models import Ocpp201Transaction, Ocpp201TransactionEvent
from domain.energy import MeterLimits
from gateway import intents, load_trigger
from gateway.closures import close_for_new_transaction
from gateway.meter import Sample
from gateway.metering import store_samples
from gateway.ocpp201.auth import FLAG_FREE_VEND, TokenDecision, decide_token, find_card
from gateway.ocpp201.meter import BEGIN, END, good_registers, register_at
from gateway.outbox import enqueue
from gateway.stop_checks import EdgeStop, vet_stop
from gateway.transactions import tighter
from workflows.messages import (
    SIGNAL_CONNECTOR_STATUS,
    SIGNAL_TRANSACTION_STARTED,
    SIGNAL_TRANSACTION_STOPPED,
    AuthorizationStatus,
    ConnectorStatus,
    SessionInput,
    SessionOrigin,
    TransactionStarted,
    TransactionStopped,
)

OCPP_VERSION = "2.0.1"
FLAG_UNAUTHORIZED = "unauthorized"
FLAG_START_INFERRED = "start_inferred"


def session_workflow_id(charge_box_id: str, ocpp_transaction_id: str) -> str:
    """Deterministic, so a resent event maps to the same run (no idToken in it)."""
    return f"session:{charge_box_id}:tx:{ocpp_transaction_id}"


@dataclass(frozen=True, slots=True)
class Event:
    """One TransactionEvent as checked at the edge."""

    event_type: str
    at: datetime
    trigger_reason: str
    seq_no: int
    ocpp_transaction_id: str
    charging_state: str | None
    stopped_reason: str | None
    remote_start_id: int | None
    evse_id: int | None
    connector_id: int | None
    id_token: dict[str, Any] | None
    offline: bool
    samples: list[Sample]
    payload: dict[str, Any]


@dataclass(slots=True)
class EventOutcome:
    outcome: str
    queued: bool = False
    token: TokenDecision | None = None
    transaction_id: int | None = None
    flags: list[str] = field(default_factory=list)


async def transaction_event(
    sf: SessionFactory,
    *,
    charge_box_id: str,
    event: Event,
    progress_gate: Callable[[int, bool], bool],
    limits: MeterLimits,
    now: datetime,
) -> EventOutcome:
    async with sf.begin() as s:
        await s.execute(
            pg_insert(Ocpp201Transaction)
            .values(
                charge_box_id=charge_box_id,
                ocpp_transaction_id=event.ocpp_transaction_id,
                started_at=event.at,
                flags=[] if event.event_type == "Started" else [FLAG_START_INFERRED],
            )
            .on_conflict_do_nothing(constraint="uq_ocpp201_transactions_charger_tx")
        )
        row = (
            await s.execute(
                select(Ocpp201Transaction)
                .where(
                    Ocpp201Transaction.charge_box_id == charge_box_id,
                    Ocpp201Transaction.ocpp_transaction_id == event.ocpp_transaction_id,
                )
                .with_for_update()
            )
        ).scalar_one()
        outcome = (
            "after_end"
            if row.ended_at is not None
            else "out_of_order"
            if event.seq_no < row.last_seq_no
            else "applied"
        )
        journaled = await s.scalar(
            pg_insert(Ocpp201TransactionEvent)
            .values(
                charge_box_id=charge_box_id,
                ocpp_transaction_id=event.ocpp_transaction_id,
                seq_no=event.seq_no,
                event_type=event.event_type,
                trigger_reason=event.trigger_reason,
                occurred_at=event.at,
                offline=event.offline,
                payload=_jsonable(event.payload),
                outcome=outcome,
            )
            .on_conflict_do_nothing(constraint="uq_ocpp201_transaction_events_seq")
            .returning(Ocpp201TransactionEvent.id)
        )
        token: TokenDecision | None = None
        if journaled is None or outcome == "after_end":
            # A resend, or news of a transaction that is over: answered, nothing changes.
            if event.id_token is not None:
                token = await decide_token(
                    s, charge_box_id, event.id_token, now, check_concurrency=False
                )
            return EventOutcome("duplicate" if journaled is None else outcome, token=token)
        return await _apply(s, row, event, outcome, charge_box_id, progress_gate, limits, now)


async def _apply(
    s: AsyncSession,
    row: Ocpp201Transaction,
    event: Event,
    outcome: str,
    charge_box_id: str,
    progress_gate: Callable[[int, bool], bool],
    limits: MeterLimits,
    now: datetime,
) -> EventOutcome:
    result = EventOutcome(outcome)
    changes: dict[str, Any] = {}
    if event.event_type == "Started" and event.at < row.started_at:
        changes["started_at"] = row.started_at = event.at
    if event.event_type == "Started" and FLAG_START_INFERRED in row.flags:
        changes["flags"] = row.flags = [f for f in row.flags if f != FLAG_START_INFERRED]
    if event.evse_id is not None and row.evse_id is None:
        changes["evse_id"] = row.evse_id = event.evse_id
        changes["connector_id"] = row.connector_id = event.connector_id
    if event.remote_start_id is not None and row.remote_start_id is None:
        changes["remote_start_id"] = row.remote_start_id = event.remote_start_id
    if event.offline and not row.offline:
        changes["offline"] = row.offline = True
    begin = register_at(event.samples, BEGIN)
    lowest = min(good_registers(event.samples), default=None)
    candidate = begin if begin is not None else lowest
    if (
        candidate is not None
        and (row.begin_wh is None or begin is not None or candidate < row.begin_wh)
        and row.transaction_id is None
    ):
        changes["begin_wh"] = row.begin_wh = candidate
    if event.id_token is not None:
        exclude = (
            await s.scalar(
                select(Transaction.workflow_id).where(Transaction.id == row.transaction_id)
            )
            if row.transaction_id is not None
            else await _joining_workflow(s, charge_box_id, row, event.id_token, now)
        )
        result.token = await decide_token(
            s, charge_box_id, event.id_token, now, exclude_workflow_id=exclude
        )
        if row.id_token is None and (result.token.id_tag is not None or result.token.free_vend):
            changes["id_token"] = row.id_token = result.token.id_tag or ""
            changes["id_token_type"] = row.id_token_type = str(event.id_token.get("type", ""))
    if outcome == "applied":
        changes["last_seq_no"] = row.last_seq_no = event.seq_no
    ended = event.event_type == "Ended"

    tx: Transaction | None = None
    if row.transaction_id is None:
        tx = await _bind(s, row, event, result, charge_box_id, now, force=ended)
        if tx is not None:
            changes["transaction_id"] = row.transaction_id = tx.id
            result.queued = True
    else:
        tx = await s.get(Transaction, row.transaction_id)
    result.transaction_id = row.transaction_id
    connector = tx.connector_id if tx is not None else (row.evse_id or 0)
    if event.samples:
        events = await store_samples(
            s,
            charge_box_id=charge_box_id,
            connector_id=connector,
            tx=tx,
            transaction_id=tx.id if tx is not None else None,
            samples=event.samples,
            progress_gate=progress_gate,
            limits=limits,
        )
        result.queued = result.queued or events > 0
    if (
        tx is not None
        and outcome == "applied"
        and event.charging_state is not None
        and event.charging_state != row.charging_state
        and not ended
    ):
        await enqueue(
            s,
            workflow_id=tx.workflow_id,
            kind=SIGNAL_CONNECTOR_STATUS,
            start=_session_input(tx, "charger"),
            signal=ConnectorStatus(
                event_id=0,
                connector_id=tx.connector_id,
                status=event.charging_state,
                error_code="NoError",
                at=event.at,
            ),
        )
        result.queued = True
    if event.charging_state is not None and outcome == "applied":
        changes["charging_state"] = row.charging_state = event.charging_state
    if ended:
        changes["ended_at"] = row.ended_at = event.at
        changes["stopped_reason"] = row.stopped_reason = event.stopped_reason or "Local"
        if tx is not None:
            await _stop(s, tx, event, limits, now)
            result.queued = True
        else:
            changes["flags"] = row.flags = [*row.flags, FLAG_UNAUTHORIZED]
    if changes:
        await s.execute(
            update(Ocpp201Transaction).where(Ocpp201Transaction.id == row.id).values(**changes)
        )
    result.flags = list(row.flags)
    return result


async def _joining_workflow(
    s: AsyncSession,
    charge_box_id: str,
    row: Ocpp201Transaction,
    id_token: dict[str, Any],
    now: datetime,
) -> str:
    """The session an unbound transaction is about to join (the remote start's or the tap's,
    else its own): the card's concurrency must not count that very session against it."""
    t = session_intents
    if row.remote_start_id is not None:
        found = await s.scalar(
            select(t.c.workflow_id).where(
                t.c.id == row.remote_start_id, t.c.charge_box_id == charge_box_id
            )
        )
        if found is not None:
            return str(found)
    id_tag = await find_card(s, str(id_token.get("idToken", "")), str(id_token.get("type", "")))
    if id_tag is not None:
        evse = row.evse_id or 0
        found = await s.scalar(
            select(t.c.workflow_id)
            .where(
                t.c.charge_box_id == charge_box_id,
                t.c.id_tag == id_tag,
                t.c.consumed_at.is_(None),
                t.c.expires_at > now,
                (t.c.connector_id.is_(None)) | (t.c.connector_id == evse),
            )
            .order_by(t.c.created_at.desc(), t.c.id.desc())
            .limit(1)
        )
        if found is not None:
            return str(found)
    return session_workflow_id(charge_box_id, row.ocpp_transaction_id)


async def _remote_intent(
    s: AsyncSession, charge_box_id: str, remote_start_id: int, now: datetime
) -> intents.Intent | None:
    t = session_intents
    found = (
        await s.execute(
            select(t.c.id, t.c.workflow_id, t.c.origin, t.c.auth_status, t.c.id_tag)
            .where(t.c.id == remote_start_id, t.c.charge_box_id == charge_box_id)
            .with_for_update()
        )
    ).first()
    if found is None:
        return None
    await s.execute(update(t).where(t.c.id == found.id).values(consumed_at=now))
    return intents.Intent(found.id, found.workflow_id, found.origin, found.auth_status)


async def _bind(
    s: AsyncSession,
    row: Ocpp201Transaction,
    event: Event,
    result: EventOutcome,
    charge_box_id: str,
    now: datetime,
    *,
    force: bool,
) -> Transaction | None:
    intent: intents.Intent | None = None
    id_tag = row.id_token
    if row.remote_start_id is not None:
        intent = await _remote_intent(s, charge_box_id, row.remote_start_id, now)
        if intent is not None and id_tag is None:
            id_tag = await s.scalar(
                select(session_intents.c.id_tag).where(session_intents.c.id == intent.id)
            )
    if id_tag is None:
        return None
    if row.begin_wh is None and not force:
        return None
    evse = row.evse_id or 0
    if intent is None and id_tag:
        intent = await intents.take(
            s, charge_box_id=charge_box_id, id_tag=id_tag, connector_id=evse, now=now
        )
    origin: SessionOrigin = "charger"
    if intent is not None:
        workflow_id = intent.workflow_id
        origin = "remote" if intent.origin == "remote" else "tap"
    else:
        workflow_id = session_workflow_id(charge_box_id, row.ocpp_transaction_id)
    free_vend = id_tag == ""
    status: AuthorizationStatus = "Accepted"
    owner: str | None = None
    if not free_vend:
        token = result.token
        if token is None or token.id_tag != id_tag:
            token = await decide_token(
                s,
                charge_box_id,
                {"idToken": id_tag, "type": row.id_token_type or ""},
                now,
                exclude_workflow_id=workflow_id,
            )
        status = token.decision.status
        if intent is not None:
            status = tighter(status, intent.auth_status)
        owner = await s.scalar(
            select(UserMapping.user_id).where(UserMapping.id_tag == id_tag, UserMapping.is_active)
        )
    if evse:
        await close_for_new_transaction(s, charge_box_id=charge_box_id, connector_id=evse, now=now)
    meter_start = row.begin_wh if row.begin_wh is not None else 0
    tx = (
        await s.execute(
            pg_insert(Transaction)
            .values(
                charge_box_id=charge_box_id,
                connector_id=evse,
                id_tag=id_tag,
                workflow_id=workflow_id,
                auth_status=status,
                meter_start_wh=meter_start,
                started_at=row.started_at,
                owner_user_id=owner,
                ocpp_version=OCPP_VERSION,
                ocpp_transaction_id=row.ocpp_transaction_id,
            )
            .returning(Transaction)
        )
    ).scalar_one()
    if intent is not None:
        await s.execute(
            update(session_intents)
            .where(session_intents.c.id == intent.id)
            .values(transaction_id=tx.id)
        )
    await enqueue(
        s,
        workflow_id=workflow_id,
        kind=SIGNAL_TRANSACTION_STARTED,
        start=SessionInput(
            charge_box_id=charge_box_id,
            connector_id=evse,
            id_tag=id_tag,
            origin=origin,
            requested_at=row.started_at,
        ),
        signal=TransactionStarted(
            event_id=0,
            transaction_id=tx.id,
            charge_box_id=charge_box_id,
            connector_id=evse,
            id_tag=id_tag,
            meter_start_wh=meter_start,
            started_at=row.started_at,
            auth_status=status,
            user_id=owner,
        ),
    )
    if free_vend and FLAG_FREE_VEND not in row.flags:
        row.flags = [*row.flags, FLAG_FREE_VEND]
        await s.execute(
            update(Ocpp201Transaction)
            .where(Ocpp201Transaction.id == row.id)
            .values(flags=row.flags)
        )
    await load_trigger.enqueue_if_limited(s, charge_box_id, "started")
    return tx


async def _stop(
    s: AsyncSession, tx: Transaction, event: Event, limits: MeterLimits, now: datetime
) -> None:
    end = register_at(event.samples, END)
    if end is None:
        registers = good_registers(event.samples)
        end = max(registers) if registers else None
    vetted = await vet_stop(s, tx, EdgeStop(end, event.at, [], ()), limits=limits, now=now)
    reason = event.stopped_reason or "Local"
    stop_tag = None
    if event.id_token is not None:
        stop_tag = str(event.id_token.get("idToken", ""))[:20] or None
    await s.execute(
        update(Transaction)
        .where(Transaction.id == tx.id)
        .values(
            meter_stop_wh=vetted.meter_stop_wh,
            stopped_at=vetted.stopped_at,
            stop_reason=reason,
            stop_id_tag=stop_tag,
            stop_flags=vetted.flags or None,
        )
    )
    await enqueue(
        s,
        workflow_id=tx.workflow_id,
        kind=SIGNAL_TRANSACTION_STOPPED,
        start=_session_input(tx, "charger"),
        signal=TransactionStopped(
            event_id=0,
            transaction_id=tx.id,
            meter_stop_wh=vetted.meter_stop_wh,
            stopped_at=vetted.stopped_at,
            reason=reason,
            id_tag=stop_tag,
            flags=vetted.flags,
        ),
    )
    await load_trigger.enqueue_if_limited(s, tx.charge_box_id, "stopped")


def _session_input(tx: Transaction, origin: SessionOrigin) -> SessionInput:
    return SessionInput(
        charge_box_id=tx.charge_box_id,
        connector_id=tx.connector_id,
        id_tag=tx.id_tag,
        origin=origin,
    )


def _jsonable(value: Any) -> Any:
    """The raw payload for JSONB: a Decimal keeps its exact text (as a string)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value
