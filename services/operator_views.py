"""Operator views of one charging session: the session, its meter samples, its billing events and
its workflow timeline (``docs/operator-views.md``; the list is ``services/session_list.py``).

Every function here is a read for operators: the actor must be an admin or an operator
(:class:`services.errors.Forbidden` otherwise). A session is named by its workflow id
(``session:…``) or by an OCPP transaction id (digits), which is looked up in the journal.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.service import RPCError, RPCStatusCode

from db.models import BillingEvent, ChargingSession, MeterSample, Transaction
from services.actor import Actor
from services.context import ServiceContext
from services.errors import Forbidden, InvalidInput, NotFound, Unavailable
from services.payload_summary import redactor_for
from services.timeline import ENTRY_KINDS, build_timeline, fetch_runs, ui_link

OPERATOR_ROLES = frozenset({"admin", "operator"})
MAX_SAMPLES = 5000


def require_operator(actor: Actor) -> None:
    if actor.role not in OPERATOR_ROLES:
        raise Forbidden("this needs an operator or the admin role")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


# -- one session ----------------------------------------------------------------------------------


async def find_session(db: AsyncSession, session_id: str) -> ChargingSession | None:
    """By workflow id, by transaction id (digits, possibly negative: ``-1`` exists in the wild;
    the journal's transaction names its workflow), or by an OCPP 2.0.1 charger's own
    transactionId (unique per charger: ``<chargeBoxId>:<transactionId>`` when two chargers used
    the same one)."""
    text = session_id.strip()
    found = await db.get(ChargingSession, text)
    if found is not None:
        return found
    workflow_id: str | None = None
    if text.lstrip("-").isdigit() and len(text) <= 19:
        workflow_id = await db.scalar(
            select(Transaction.workflow_id).where(Transaction.id == int(text))
        )
        if workflow_id is None:
            workflow_id = await db.scalar(
                select(ChargingSession.workflow_id)
                .where(ChargingSession.transaction_id == int(text))
                .limit(1)
            )
    if workflow_id is None:
        workflow_id = await _by_charger_transaction_id(db, text)
    if workflow_id is None:
        return None
    return await db.get(ChargingSession, workflow_id)


async def _by_charger_transaction_id(db: AsyncSession, text: str) -> str | None:
    candidates: list[tuple[str | None, str]] = [(None, text)]
    charge_box_id, sep, ocpp_tx = text.rpartition(":")
    if sep and charge_box_id and ocpp_tx:
        candidates.insert(0, (charge_box_id, ocpp_tx))
    for charger, tx in candidates:
        if len(tx) > 36:
            continue
        query = select(Transaction.charge_box_id, Transaction.workflow_id).where(
            Transaction.ocpp_transaction_id == tx
        )
        if charger is not None:
            query = query.where(Transaction.charge_box_id == charger)
        rows = (await db.execute(query.limit(2))).all()
        if len(rows) > 1:
            raise InvalidInput(
                f"transactionId {tx!r} was used by more than one charger; "
                f"name it as <chargeBoxId>:{tx}",
                issues=[{"path": ["session_id"], "message": "ambiguous transactionId"}],
            )
        if rows:
            return str(rows[0].workflow_id)
    return None


async def get_session(ctx: ServiceContext, actor: Actor, session_id: str) -> ChargingSession:
    require_operator(actor)
    async with ctx.sessions() as db:
        row = await find_session(db, session_id)
    if row is None:
        raise NotFound(f"no session {session_id!r}")
    return row


async def session_transactions(db: AsyncSession, workflow_id: str) -> list[Transaction]:
    stmt = (
        select(Transaction).where(Transaction.workflow_id == workflow_id).order_by(Transaction.id)
    )
    return list((await db.scalars(stmt)).all())


def sample_dict(s: MeterSample) -> dict[str, Any]:
    return {
        "transaction_id": s.transaction_id,
        "connector_id": s.connector_id,
        "sampled_at": _iso(s.sampled_at),
        "measurand": s.measurand,
        "phase": s.phase,
        "unit": s.unit,
        "context": s.context,
        "value": s.raw_value,
        "energy_wh": s.energy_wh,
        "flag": s.flag,
        "received_at": _iso(s.received_at),
    }


def billing_event_dict(e: BillingEvent) -> dict[str, Any]:
    return {
        # Lago's transaction_id for the line: <workflow id>:<sequence> (its idempotency key).
        "transaction_id": e.transaction_id,
        "sequence": e.sequence,
        "kind": e.kind,
        "energy_wh": e.energy_wh,
        "amount_minor": e.amount_minor,
        "currency": e.currency,
        "occurred_at": _iso(e.occurred_at),
        "sent_at": _iso(e.sent_at),
        "lago_customer_external_id": e.lago_customer_external_id,
    }


async def samples_of(db: AsyncSession, workflow_id: str, limit: int) -> list[MeterSample]:
    tx_ids = [t.id for t in await session_transactions(db, workflow_id)]
    if not tx_ids:
        return []
    stmt = (
        select(MeterSample)
        .where(MeterSample.transaction_id.in_(tx_ids))
        .order_by(MeterSample.sampled_at, MeterSample.id)
        .limit(limit)
    )
    return list((await db.scalars(stmt)).all())


async def billing_events_of(db: AsyncSession, workflow_id: str) -> list[BillingEvent]:
    stmt = (
        select(BillingEvent)
        .where(BillingEvent.workflow_id == workflow_id)
        .order_by(BillingEvent.sequence)
    )
    return list((await db.scalars(stmt)).all())


async def meter_samples(
    ctx: ServiceContext, actor: Actor, session_id: str, *, limit: int = 1000
) -> list[dict[str, Any]]:
    """Every sample the charger sent for the session's transactions (flagged ones included,
    with their flag: they were kept but not billed)."""
    require_operator(actor)
    if not 1 <= limit <= MAX_SAMPLES:
        raise InvalidInput(
            "limit out of range", issues=[{"path": ["limit"], "message": f"1 to {MAX_SAMPLES}"}]
        )
    async with ctx.sessions() as db:
        row = await _existing(db, session_id)
        return [sample_dict(s) for s in await samples_of(db, row.workflow_id, limit)]


async def billing_events(
    ctx: ServiceContext, actor: Actor, session_id: str
) -> list[dict[str, Any]]:
    """The usage lines the workflow billed; ``sent_at`` is when Lago accepted the line."""
    require_operator(actor)
    async with ctx.sessions() as db:
        row = await _existing(db, session_id)
        return [billing_event_dict(e) for e in await billing_events_of(db, row.workflow_id)]


async def _existing(db: AsyncSession, session_id: str) -> ChargingSession:
    row = await find_session(db, session_id)
    if row is None:
        raise NotFound(f"no session {session_id!r}")
    return row


# -- the timeline ---------------------------------------------------------------------------------


async def session_timeline(
    ctx: ServiceContext, actor: Actor, session_id: str, *, kinds: str | None = None
) -> dict[str, Any]:
    """The session's workflow history across its runs, with the Temporal UI link of each run.
    ``kinds``: only these entry kinds (comma-separated: ``state,activity``)."""
    wanted = {k.strip() for k in (kinds or "").split(",") if k.strip()}
    unknown = sorted(wanted - ENTRY_KINDS)
    if unknown:
        raise InvalidInput(
            "unknown entry kind",
            issues=[
                {
                    "path": ["kind"],
                    "message": f"unknown {', '.join(unknown)} "
                    f"(one of {', '.join(sorted(ENTRY_KINDS))})",
                }
            ],
        )
    row = await get_session(ctx, actor, session_id)
    try:
        runs = await fetch_runs(await ctx.temporal(), row.workflow_id)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            # Past the namespace's retention the history is gone; the read model stays.
            raise NotFound(f"Temporal keeps no history for {row.workflow_id} any more") from exc
        raise Unavailable(f"Temporal did not answer: {exc.message}") from exc
    except RuntimeError as exc:  # the client could not connect
        raise Unavailable(f"Temporal is unreachable: {exc}") from exc
    entries = build_timeline(runs, redactor_for(ctx.settings, row.workflow_id))
    base = ctx.settings.temporal_ui_base()
    namespace = ctx.settings.temporal_namespace
    return {
        "workflow_id": row.workflow_id,
        "transaction_id": row.transaction_id,
        "state": row.state,
        "runs": [
            {"run_id": run_id, "ui": ui_link(base, namespace, row.workflow_id, run_id)}
            for run_id, _ in runs
        ],
        "ui": ui_link(base, namespace, row.workflow_id, runs[-1][0]) if runs else None,
        "entries": [e.as_dict() for e in entries if not wanted or e.kind in wanted],
    }
