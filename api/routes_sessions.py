"""Charging-session lists (a driver's own, and all of them for operators) and the operators'
force-close (``POST /api/v1/sessions/{workflow_id}/close``: live admin session, audited)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import Select, select

from api.authz import AdminUser, CurrentUser, LiveAdmin, Principal, not_found_unless
from api.deps import State
from api.errors import ApiError, NotFound
from api.identity_views import SessionOut, owned_sessions
from api.session_actions import SessionActionError, force_close
from db.audit import write_audit
from db.models import ChargingSession
from services.tariffs import session_tariff
from workflows.messages import MAX_OPERATOR_ENERGY_WH, ForceCloseResult

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
        tariff = await session_tariff(db, row.tariff_version_id)
    return SessionOut.of(row, with_user=True).model_copy(update={"tariff": tariff})


class CloseIn(BaseModel):
    reason: str = Field(min_length=1, max_length=500)
    # Bill this energy (Wh since the start) instead of the last register the charger reported.
    energy_wh: int | None = Field(default=None, ge=0, le=MAX_OPERATOR_ENERGY_WH)


@router.post("/sessions/{workflow_id}/close", response_model=ForceCloseResult)
async def close_session(
    workflow_id: str, body: CloseIn, admin: LiveAdmin, state: State
) -> ForceCloseResult:
    """Close a running session without the charger's consent (audited, with any entered energy)."""
    async with state.sessions() as db:
        row = await db.get(ChargingSession, workflow_id)
    if row is None:
        raise NotFound("session")
    audit = {"reason": body.reason, "energy_wh": body.energy_wh}
    try:
        result = await force_close(
            await state.temporal(),
            workflow_id,
            requested_by=admin.actor,
            reason=body.reason,
            energy_wh=body.energy_wh,
        )
    except SessionActionError as exc:
        await _audit_close(state, admin, workflow_id, {**audit, "refused": exc.message})
        if exc.code == "not_found":
            raise NotFound("session") from exc
        raise ApiError(409, "SESSION_NOT_RUNNING", exc.message) from exc
    await _audit_close(state, admin, workflow_id, {**audit, "accepted": result.accepted})
    if not result.accepted:
        raise ApiError(409, "SESSION_NOT_RUNNING", result.message or "nothing to close")
    return result


async def _audit_close(
    state: State, admin: Principal, workflow_id: str, details: dict[str, object]
) -> None:
    await write_audit(
        state.sessions,
        admin.actor,
        "session.force_close",
        subject=workflow_id,
        source=admin.source,
        details=details,
    )
