"""Read-only charging-session lists: a driver's own, and all of them for operators."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import Select, select

from api.authz import AdminUser, CurrentUser, not_found_unless
from api.deps import State
from api.errors import NotFound
from api.identity_views import SessionOut, owned_sessions
from db.models import ChargingSession

router = APIRouter(prefix="/api/v1", tags=["sessions"])

Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0)]


def _newest_first(query: Select[ChargingSession]) -> Select[ChargingSession]:
    return query.order_by(
        ChargingSession.started_at.desc().nulls_last(), ChargingSession.workflow_id
    )


@router.get("/me/sessions", response_model=list[SessionOut])
async def my_sessions(
    user: CurrentUser,
    state: State,
    state_filter: Annotated[str | None, Query(alias="state", max_length=32)] = None,
    since: datetime | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> list[SessionOut]:
    query = owned_sessions(user.user_id)
    if state_filter:
        query = query.where(ChargingSession.state == state_filter)
    if since:
        query = query.where(ChargingSession.started_at >= since)
    async with state.sessions() as db:
        rows = (await db.scalars(_newest_first(query).limit(limit).offset(offset))).all()
    return [SessionOut.of(row) for row in rows]


@router.get("/me/sessions/{workflow_id}", response_model=SessionOut)
async def my_session(workflow_id: str, user: CurrentUser, state: State) -> SessionOut:
    query = owned_sessions(user.user_id).where(ChargingSession.workflow_id == workflow_id)
    async with state.sessions() as db:
        row = await db.scalar(query)
    not_found_unless(row, "session")
    assert row is not None
    return SessionOut.of(row)


@router.get("/sessions", response_model=list[SessionOut])
async def all_sessions(
    _: AdminUser,
    state: State,
    charge_box_id: Annotated[str | None, Query(max_length=255)] = None,
    id_tag: Annotated[str | None, Query(max_length=20)] = None,
    user_id: Annotated[str | None, Query(max_length=64)] = None,
    state_filter: Annotated[str | None, Query(alias="state", max_length=32)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[SessionOut]:
    query = select(ChargingSession)
    for column, value in (
        (ChargingSession.charge_box_id, charge_box_id),
        (ChargingSession.id_tag, id_tag),
        (ChargingSession.user_id, user_id),
        (ChargingSession.state, state_filter),
    ):
        if value is not None:
            query = query.where(column == value)
    async with state.sessions() as db:
        rows = (await db.scalars(_newest_first(query).limit(limit).offset(offset))).all()
    return [SessionOut.of(row, with_user=True) for row in rows]


@router.get("/sessions/{workflow_id}", response_model=SessionOut)
async def one_session(workflow_id: str, _: AdminUser, state: State) -> SessionOut:
    async with state.sessions() as db:
        row = await db.get(ChargingSession, workflow_id)
    if row is None:
        raise NotFound("session")
    return SessionOut.of(row, with_user=True)
