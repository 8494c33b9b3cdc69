"""The operators' session list: filters (charger, card, user, state, start date range), their
validation (one issue per bad parameter) and a stable order with a cursor
(``docs/operator-views.md``)."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from config.settings import Settings
from db.models import ChargingSession
from domain.session_model import Phase
from services.actor import Actor
from services.context import ServiceContext
from services.errors import InvalidInput
from services.operator_views import require_operator

MAX_LIMIT = 500
STATES = frozenset(p.value for p in Phase)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


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
    after: tuple[datetime, str] | None = None  # the cursor: the last row's sort key


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


def listed_at() -> Any:
    """When a session belongs in the list: its start, or (never started: a refused tap, a remote
    start that timed out) when it was requested. Set once; a session that starts moves from its
    request to its start, seconds apart."""
    return func.coalesce(ChargingSession.started_at, ChargingSession.created_at)


def _encode_cursor(row: ChargingSession) -> str:
    key = {"t": (row.started_at or row.created_at).isoformat(), "w": row.workflow_id}
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str] | None:
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        listed = datetime.fromisoformat(raw["t"])
        workflow_id = raw["w"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None
    if not isinstance(workflow_id, str) or listed.tzinfo is None:
        return None
    return listed, workflow_id


def session_filter(query: SessionQuery) -> Select[ChargingSession]:
    """Newest first (by :func:`listed_at`), ties by workflow id: a stable order, so a cursor
    (the last row's key) continues exactly where the page ended; the index
    ``ix_charging_sessions_listed`` serves the order and the cursor's seek."""
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
        stmt = stmt.where(tuple_(listed_at(), ChargingSession.workflow_id) < tuple_(*query.after))
    return stmt.order_by(listed_at().desc(), ChargingSession.workflow_id.desc())


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
