"""Live streams (Server-Sent Events): ``GET /api/v1/me/stream`` and ``GET /api/v1/stream``.

Each SSE event is one platform event (``db/events.py``): ``id`` is its id, ``event`` its type,
``data`` a JSON object ``{id, type, occurred_at, charge_box_id, site_id, payload}``. A client
that reconnects with ``Last-Event-ID`` gets the events it missed, in order, from the database
(bounded: too many or too old and it gets one ``reset`` event, meaning "refetch your state").
A comment line every ``POLARIS_STREAM_HEARTBEAT_S`` keeps proxies from closing an idle stream.
A stream ends when the bearer token expires (the client reconnects with a fresh token and
``Last-Event-ID``), when the client falls too far behind, and on shutdown. See docs/live.md.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from sqlalchemy import ColumnElement, and_, or_, select, text
from sse_starlette import EventSourceResponse, ServerSentEvent

from api.authz import LiveOperator, LiveUser, Principal
from api.deps import AppState, State
from api.errors import ApiError
from api.live_hub import EventHub, StreamEvent
from db.engine import SessionFactory
from db.models import Charger, ChargingSession, PlatformEvent
from domain.events import (
    CHARGER_CONNECTED,
    CHARGER_OFFLINE,
    CHARGER_STATUS_CHANGED,
    EVENT_TYPES,
    SESSION_STARTED,
)

router = APIRouter(prefix="/api/v1", tags=["live"])

# What a driver sees about the chargers at their sites (never who charges there).
CHARGER_TYPES = frozenset({CHARGER_STATUS_CHANGED, CHARGER_CONNECTED, CHARGER_OFFLINE})
RESET = "reset"


async def hub_of(state: AppState) -> EventHub:
    """The process's hub, started on first use (stopped in the app's lifespan)."""
    async with state._live_hub_lock:
        if state.live_hub is None:
            hub = EventHub(state.settings, state.sessions)
            await hub.start()
            state.live_hub = hub
        return state.live_hub


# -- filters -----------------------------------------------------------------------------------


@dataclass
class StreamFilter:
    """Who may see what: a driver (``user_id`` set) sees their own events and the charger
    events of their sites' chargers; an operator sees everything, or ``types`` only."""

    user_id: str | None = None
    charge_box_ids: set[str] = field(default_factory=set)
    types: frozenset[str] | None = None

    def accepts(self, event: StreamEvent) -> bool:
        if self.types is not None and event.type not in self.types:
            return False
        if self.user_id is None:
            return True
        if event.user_id == self.user_id:
            return True
        return event.type in CHARGER_TYPES and event.charge_box_id in self.charge_box_ids

    def where(self) -> ColumnElement[bool]:
        e = PlatformEvent
        clauses: list[ColumnElement[bool]] = []
        if self.types is not None:
            clauses.append(e.type.in_(sorted(self.types)))
        if self.user_id is not None:
            mine: ColumnElement[bool] = e.user_id == self.user_id
            if self.charge_box_ids:
                mine = or_(
                    mine,
                    and_(
                        e.type.in_(sorted(CHARGER_TYPES)),
                        e.charge_box_id.in_(sorted(self.charge_box_ids)),
                    ),
                )
            clauses.append(mine)
        return and_(*clauses) if clauses else e.id.is_not(None)


def parse_types(raw: str | None) -> frozenset[str] | None:
    """``?types=session.started,charger.*``: exact types or ``<noun>.*``; 422 for unknown ones."""
    if raw is None or not raw.strip():
        return None
    chosen: set[str] = set()
    unknown: list[str] = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        if item.endswith(".*"):
            matched = {t for t in EVENT_TYPES if t.startswith(item[:-1])}
        else:
            matched = {item} & EVENT_TYPES
        if not matched:
            unknown.append(item)
        chosen |= matched
    if unknown or not chosen:
        known = ", ".join(sorted(EVENT_TYPES))
        raise ApiError(
            422,
            "VALIDATION_FAILED",
            "unknown event types: " + ", ".join(unknown or [raw]),
            issues=[
                {
                    "path": ["query", "types"],
                    "message": f"{item!r} is not an event type (known: {known})",
                }
                for item in (unknown or [raw])
            ],
        )
    return frozenset(chosen)


async def my_chargers(sessions: SessionFactory, user_id: str) -> set[str]:
    """ "My sites": the sites of every charger the driver has charged at (a session of theirs) or
    reserved; their chargers, plus any site-less charger they used itself."""
    async with sessions() as db:
        used = set(
            (
                await db.scalars(
                    select(ChargingSession.charge_box_id)
                    .where(ChargingSession.user_id == user_id)
                    .distinct()
                )
            ).all()
        )
        if await db.scalar(text("SELECT to_regclass('public.reservations') IS NOT NULL")):
            reserved = await db.execute(
                text("SELECT DISTINCT charge_box_id FROM reservations WHERE user_id = :u"),
                {"u": user_id},
            )
            used |= {str(row[0]) for row in reserved}
        if not used:
            return set()
        sites = select(Charger.site_id).where(
            Charger.charge_box_id.in_(sorted(used)), Charger.site_id.is_not(None)
        )
        at_sites = set(
            (
                await db.scalars(select(Charger.charge_box_id).where(Charger.site_id.in_(sites)))
            ).all()
        )
    return used | at_sites


# -- the stream --------------------------------------------------------------------------------


def parse_last_event_id(header: str | None, query: int | None) -> int | None:
    raw = header if header is not None else (str(query) if query is not None else None)
    if raw is None or not raw.strip():
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        raise ApiError(
            422,
            "VALIDATION_FAILED",
            "Last-Event-ID must be an event id (an integer)",
            issues=[{"path": ["header", "Last-Event-ID"], "message": "not an integer"}],
        ) from None
    if value < 0:
        raise ApiError(
            422,
            "VALIDATION_FAILED",
            "Last-Event-ID must not be negative",
            issues=[{"path": ["header", "Last-Event-ID"], "message": "negative"}],
        )
    return value


def sse_of(event: StreamEvent) -> ServerSentEvent:
    data = {
        "id": event.id,
        "type": event.type,
        "occurred_at": event.occurred_at.isoformat(),
        "charge_box_id": event.charge_box_id,
        "site_id": event.site_id,
        "payload": event.payload,
    }
    return ServerSentEvent(
        data=json.dumps(data, separators=(",", ":")), event=event.type, id=str(event.id)
    )


def reset_event(upto: int, reason: str) -> ServerSentEvent:
    return ServerSentEvent(
        data=json.dumps({"reason": reason, "resume_after": upto}),
        event=RESET,
        id=str(upto),
    )


async def _replay(
    state: AppState, flt: StreamFilter, after: int, upto: int
) -> list[StreamEvent] | str:
    """The events after ``after`` up to ``upto`` the filter accepts, or why a reset is due."""
    settings = state.settings
    limit = settings.stream_replay_max
    async with state.sessions() as db:
        if after > 0:
            # Too old: the event the client saw last (or, if that id is unknown, the first one
            # after it) is older than the replay age.
            oldest_allowed = datetime.now(UTC) - timedelta(seconds=settings.stream_replay_max_age_s)
            seen_at = await db.scalar(
                select(PlatformEvent.occurred_at).where(PlatformEvent.id == after)
            )
            if seen_at is None:
                seen_at = await db.scalar(
                    select(PlatformEvent.occurred_at)
                    .where(PlatformEvent.id > after)
                    .order_by(PlatformEvent.id)
                    .limit(1)
                )
            if seen_at is not None and seen_at < oldest_allowed:
                return "too_old"
        rows = (
            await db.scalars(
                select(PlatformEvent)
                .where(PlatformEvent.id > after, PlatformEvent.id <= upto, flt.where())
                .order_by(PlatformEvent.id)
                .limit(limit + 1)
            )
        ).all()
    if len(rows) > limit:
        return "too_many"
    return [StreamEvent.of(row) for row in rows]


async def event_stream(
    request: Request,
    state: AppState,
    principal: Principal,
    flt: StreamFilter,
    last_event_id: int | None,
) -> AsyncIterator[ServerSentEvent]:
    hub = await hub_of(state)
    subscriber = hub.subscribe(flt.accepts)  # first: nothing committed from now on is missed
    upto = hub.watermark
    sent = upto
    try:
        if last_event_id is not None and last_event_id < upto:
            replayed = await _replay(state, flt, last_event_id, upto)
            if isinstance(replayed, str):
                yield reset_event(upto, replayed)
            else:
                for missed in replayed:
                    yield sse_of(missed)
        elif last_event_id is not None:
            sent = max(sent, last_event_id)
        deadline = principal.expires_at
        while True:
            remaining = None if deadline is None else deadline - time.time()
            if remaining is not None and remaining <= 0:
                return  # the token expired: reconnect with a fresh one and Last-Event-ID
            try:
                event = await asyncio.wait_for(subscriber.next(), timeout=remaining)
            except TimeoutError:
                return
            if event is None:
                return  # shutting down, or this client fell too far behind
            if event.id <= sent:
                continue
            if (
                flt.user_id is not None
                and event.user_id == flt.user_id
                and event.type == SESSION_STARTED
                and event.charge_box_id not in flt.charge_box_ids
            ):
                # A charger at a new site: its status is the driver's business from now on.
                flt.charge_box_ids |= await my_chargers(state.sessions, flt.user_id)
            sent = event.id
            yield sse_of(event)
    finally:
        hub.unsubscribe(subscriber)


STREAM_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": (
            "A text/event-stream. Each event: `id` (the platform event id, use it as "
            "Last-Event-ID), `event` (its type, or `reset`), `data` (JSON: id, type, "
            "occurred_at, charge_box_id, site_id, payload). Comment lines are heartbeats."
        ),
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    },
    401: {"description": "No valid bearer token, or the session has ended"},
    422: {"description": "A bad Last-Event-ID or an unknown event type in `types`"},
}

LastEventIdHeader = Annotated[str | None, Header(alias="Last-Event-ID")]
LastEventIdQuery = Annotated[
    int | None,
    Query(
        alias="last_event_id",
        description="Like the Last-Event-ID header, for clients that cannot set headers",
    ),
]


def _response(
    request: Request, state: AppState, principal: Principal, flt: StreamFilter, last: int | None
) -> EventSourceResponse:
    return EventSourceResponse(
        event_stream(request, state, principal, flt, last),
        ping=state.settings.stream_heartbeat_s,
        # A client whose socket stops taking data is dropped instead of blocking its stream.
        send_timeout=30,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.get(
    "/me/stream",
    summary="My live events: my sessions' state and meter progress, my sites' charger status",
    response_class=EventSourceResponse,
    responses=STREAM_RESPONSES,
)
async def my_stream(
    request: Request,
    user: LiveUser,
    state: State,
    last_event_id: LastEventIdHeader = None,
    last_event_id_query: LastEventIdQuery = None,
) -> EventSourceResponse:
    last = parse_last_event_id(last_event_id, last_event_id_query)
    flt = StreamFilter(
        user_id=user.user_id, charge_box_ids=await my_chargers(state.sessions, user.user_id)
    )
    return _response(request, state, user, flt, last)


@router.get(
    "/stream",
    summary="Operators' live events: sessions, charger status, operation results, campaigns",
    response_class=EventSourceResponse,
    responses={**STREAM_RESPONSES, 403: {"description": "Not an operator or admin"}},
)
async def operator_stream(
    request: Request,
    operator: LiveOperator,
    state: State,
    types: Annotated[
        str | None,
        Query(
            description="Comma-separated event types or `<noun>.*`, "
            "e.g. `session.*,charger.offline`"
        ),
    ] = None,
    last_event_id: LastEventIdHeader = None,
    last_event_id_query: LastEventIdQuery = None,
) -> EventSourceResponse:
    last = parse_last_event_id(last_event_id, last_event_id_query)
    flt = StreamFilter(types=parse_types(types))
    return _response(request, state, operator, flt, last)


__all__ = ["StreamFilter", "hub_of", "my_chargers", "parse_types", "router"]
