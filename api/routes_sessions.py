"""Charging-session lists (a driver's own, and all of them for operators), the operators' views of
one session (by workflow or transaction id: its timeline, meter samples and billing events; see
``docs/operator-views.md``) and the force-close (``POST /api/v1/sessions/{workflow_id}/close``:
live admin session, audited)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field
from sqlalchemy import Select

from api.authz import AdminUser, CurrentUser, LiveAdmin, Principal
from api.deps import State
from api.errors import ApiError, NotFound
from api.identity_views import SessionOut, owned_sessions
from api.services import Services, actor_of
from api.session_actions import SessionActionError, force_close
from db.audit import write_audit
from db.models import ChargingSession
from services import operator_views, session_list
from services.idle_fees import session_idle_fee
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


# GET /me/sessions/{workflow_id} (one of my sessions, in detail) is in api/routes_driver.py.


@router.get("/sessions", response_model=list[SessionOut])
async def all_sessions(
    admin: AdminUser,
    services: Services,
    response: Response,
    charger: Annotated[str | None, Query(alias="charger")] = None,
    charge_box_id: Annotated[str | None, Query(include_in_schema=False)] = None,
    card: Annotated[str | None, Query(description="idTag")] = None,
    id_tag: Annotated[str | None, Query(include_in_schema=False)] = None,
    user: Annotated[str | None, Query(description="user id")] = None,
    user_id: Annotated[str | None, Query(include_in_schema=False)] = None,
    state_filter: Annotated[
        str | None, Query(alias="state", description="a state, or several: charging,suspended")
    ] = None,
    started_from: Annotated[
        str | None, Query(alias="from", description="started at or after")
    ] = None,
    started_to: Annotated[str | None, Query(alias="to", description="started before")] = None,
    limit: int = 100,
    offset: int = 0,
    cursor: str | None = None,
) -> list[SessionOut]:
    """Sessions, newest start first (never started: last). More rows: the ``X-Next-Cursor``
    header holds the ``cursor`` for the next page. Bad parameters: 422 with one issue each."""
    query = session_list.parse_session_query(
        services.settings,
        charger=charger or charge_box_id,
        card=card or id_tag,
        user=user or user_id,
        state=state_filter,
        started_from=started_from,
        started_to=started_to,
        limit=limit,
        offset=offset,
        cursor=cursor,
    )
    page = await session_list.list_sessions(services, actor_of(admin), query)
    if page.next_cursor:
        response.headers["X-Next-Cursor"] = page.next_cursor
    return [SessionOut.of(row, with_user=True) for row in page.rows]


@router.get("/sessions/{session_id}", response_model=SessionOut)
async def one_session(session_id: str, admin: AdminUser, services: Services) -> SessionOut:
    """A session by workflow id or by OCPP transaction id, with the tariff version it is billed
    under and its idle fee, if any."""
    row = await operator_views.get_session(services, actor_of(admin), session_id)
    async with services.sessions() as db:
        tariff = await session_tariff(db, row.tariff_version_id)
        idle_fee = await session_idle_fee(db, row.workflow_id)
    return SessionOut.of(row, with_user=True).model_copy(
        update={"tariff": tariff, "idle_fee": idle_fee}
    )


@router.get("/sessions/{session_id}/timeline")
async def session_timeline(
    session_id: str,
    admin: AdminUser,
    services: Services,
    kind: Annotated[
        str | None, Query(max_length=200, description="only these kinds: state,activity")
    ] = None,
) -> dict[str, Any]:
    """The session's workflow history (every run) as a timeline, with Temporal UI links."""
    return await operator_views.session_timeline(services, actor_of(admin), session_id, kinds=kind)


@router.get("/sessions/{session_id}/meter-samples")
async def session_meter_samples(
    session_id: str,
    admin: AdminUser,
    services: Services,
    limit: Annotated[int, Query(ge=1, le=operator_views.MAX_SAMPLES)] = 1000,
) -> list[dict[str, Any]]:
    return await operator_views.meter_samples(services, actor_of(admin), session_id, limit=limit)


@router.get("/sessions/{session_id}/billing-events")
async def session_billing_events(
    session_id: str, admin: AdminUser, services: Services
) -> list[dict[str, Any]]:
    return await operator_views.billing_events(services, actor_of(admin), session_id)


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
