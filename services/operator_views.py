"""Operator views of charging sessions: filtered lists, one session's story, its meter samples,
its billing events and its workflow timeline (``docs/operator-views.md``).

Every function here is a read for operators: the actor must be an admin or an operator
(:class:`services.errors.Forbidden` otherwise). A session is named by its workflow id
(``session:…``) or by an OCPP transaction id (digits), which is looked up in the journal.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.service import RPCError, RPCStatusCode

from config.settings import Settings
from db.models import BillingEvent, ChargingSession, MeterSample, Transaction
from domain.session_model import Phase
from services.actor import Actor
from services.context import ServiceContext
from services.errors import Forbidden, InvalidInput, NotFound, Unavailable
from services.timeline import ENTRY_KINDS, Redactor, build_timeline, fetch_runs, ui_link

OPERATOR_ROLES = frozenset({"admin", "operator"})
MAX_LIMIT = 500
MAX_SAMPLES = 5000
STATES = frozenset(p.value for p in Phase)


def require_operator(actor: Actor) -> None:
    if actor.role not in OPERATOR_ROLES:
        raise Forbidden("this needs an operator or the admin role")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


# -- the session list -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionQuery:
    """A validated list request. ``started_from`` inclusive, ``started_to`` exclusive."""

    charge_box_id: str | None = None
    id_tag: str | None = None
    user_id: str | None = None
    states: tuple[str, ...] = ()
    started_from: datetime | None = None
    started_to: datetime | None = None
    limit: int = 100
    offset: int = 0
    after: tuple[datetime | None, str] | None = None  # the cursor: the last row's sort key


@dataclass(frozen=True)
class SessionPage:
    rows: list[ChargingSession]
    next_cursor: str | None


def parse_session_query(
    settings: Settings,
    *,
    charger: str | None = None,
    card: str | None = None,
    user: str | None = None,
    state: str | None = None,
    started_from: str | None = None,
    started_to: str | None = None,
    limit: int = 100,
    offset: int = 0,
    cursor: str | None = None,
) -> SessionQuery:
    """Check a list request; every problem is one issue (``path`` names the parameter)."""
    issues: list[dict[str, Any]] = []
    zone = ZoneInfo(settings.operator_timezone)

    def moment(name: str, text: str | None) -> datetime | None:
        if text is None or text == "":
            return None
        try:
            return parse_moment(text, zone)
        except ValueError:
            issues.append(
                {
                    "path": [name],
                    "message": "not a date (2026-03-01) or an ISO 8601 time "
                    "(2026-03-01T08:00:00+01:00)",
                }
            )
            return None

    start, end = moment("from", started_from), moment("to", started_to)
    if start is not None and end is not None and start >= end:
        issues.append({"path": ["to"], "message": "must be after 'from'"})
    states = tuple(s.strip() for s in (state or "").split(",") if s.strip())
    unknown = sorted(set(states) - STATES)
    if unknown:
        issues.append(
            {
                "path": ["state"],
                "message": f"unknown state {', '.join(unknown)} "
                f"(one of {', '.join(sorted(STATES))})",
            }
        )
    if not 1 <= limit <= MAX_LIMIT:
        issues.append({"path": ["limit"], "message": f"between 1 and {MAX_LIMIT}"})
    if offset < 0:
        issues.append({"path": ["offset"], "message": "0 or more"})
    after = None
    if cursor:
        after = _decode_cursor(cursor)
        if after is None:
            issues.append({"path": ["cursor"], "message": "not a cursor this API gave out"})
        elif offset:
            issues.append({"path": ["offset"], "message": "use either a cursor or an offset"})
    for name, value, longest in (("charger", charger, 255), ("card", card, 20), ("user", user, 64)):
        if value is not None and not 1 <= len(value) <= longest:
            issues.append({"path": [name], "message": f"1 to {longest} characters"})
    if issues:
        raise InvalidInput("the session filter is not valid", issues=issues)
    return SessionQuery(
        charge_box_id=charger or None,
        id_tag=card or None,
        user_id=user or None,
        states=states,
        started_from=start,
        started_to=end,
        limit=limit,
        offset=offset,
        after=after,
    )


def parse_moment(text: str, zone: ZoneInfo) -> datetime:
    """An ISO 8601 time (without an offset: in ``zone``) or a date (its midnight in ``zone``)."""
    text = text.strip()
    if len(text) == 10:
        return datetime.combine(date.fromisoformat(text), time(), tzinfo=zone)
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo is not None else value.replace(tzinfo=zone)


def _encode_cursor(row: ChargingSession) -> str:
    key = {"s": _iso(row.started_at), "w": row.workflow_id}
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime | None, str] | None:
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        started = datetime.fromisoformat(raw["s"]) if raw["s"] is not None else None
        workflow_id = raw["w"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None
    if not isinstance(workflow_id, str) or (started is not None and started.tzinfo is None):
        return None
    return started, workflow_id


def session_filter(query: SessionQuery) -> Select[ChargingSession]:
    """Newest start first, sessions that never started last, ties by workflow id: a stable
    order, so a cursor (the last row's key) continues exactly where the page ended."""
    stmt = select(ChargingSession)
    for column, value in (
        (ChargingSession.charge_box_id, query.charge_box_id),
        (ChargingSession.id_tag, query.id_tag),
        (ChargingSession.user_id, query.user_id),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    if query.states:
        stmt = stmt.where(ChargingSession.state.in_(query.states))
    if query.started_from is not None:
        stmt = stmt.where(ChargingSession.started_at >= query.started_from)
    if query.started_to is not None:
        stmt = stmt.where(ChargingSession.started_at < query.started_to)
    if query.after is not None:
        started, workflow_id = query.after
        later_id = ChargingSession.workflow_id > workflow_id
        if started is None:
            stmt = stmt.where(ChargingSession.started_at.is_(None), later_id)
        else:
            stmt = stmt.where(
                or_(
                    ChargingSession.started_at < started,
                    and_(ChargingSession.started_at == started, later_id),
                    ChargingSession.started_at.is_(None),
                )
            )
    return stmt.order_by(
        ChargingSession.started_at.desc().nulls_last(), ChargingSession.workflow_id
    )


async def find_sessions(db: AsyncSession, query: SessionQuery) -> SessionPage:
    stmt = session_filter(query).limit(query.limit + 1).offset(query.offset)
    rows = list((await db.scalars(stmt)).all())
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    return SessionPage(rows, _encode_cursor(rows[-1]) if more and rows else None)


async def list_sessions(ctx: ServiceContext, actor: Actor, query: SessionQuery) -> SessionPage:
    require_operator(actor)
    async with ctx.sessions() as db:
        return await find_sessions(db, query)


# -- one session ----------------------------------------------------------------------------------


async def find_session(db: AsyncSession, session_id: str) -> ChargingSession | None:
    """By workflow id, or (digits, possibly negative: ``-1`` exists in the wild) by transaction
    id: the journal's transaction names its workflow."""
    text = session_id.strip()
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
            return None
        text = workflow_id
    return await db.get(ChargingSession, text)


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


def redactor_for(settings: Settings, workflow_id: str) -> Redactor:
    """The logs' fingerprint key, so a fingerprint here matches the gateway's log lines (without
    a configured key: a random one, which still hides the tag)."""
    key = settings.log_tag_key
    secret = key.get_secret_value().encode() if key is not None else _PROCESS_KEY
    return Redactor(secret, workflow_id=workflow_id)


# Drawn once per process when no key is configured.
_PROCESS_KEY = os.urandom(32)


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
