"""Operators: users (list, detail, role, ban) and impersonation (start, stop).

The auth service holds the users; these routes reach it through its internal endpoints and keep
the authorization decision (and the audit trail) here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import select

from activities.auth_client import AuthServiceError, AuthServiceRefused
from api.authz import AdminUser, AnyCurrentUser, LiveAdmin, auth_client_of, live_sessions_of
from api.deps import State
from api.errors import ApiError, NotFound
from api.identity_views import MappingOut
from db.audit import write_audit
from db.models import UserMapping

router = APIRouter(prefix="/api/v1", tags=["users"])


class UserOut(BaseModel):
    id: str
    email: str
    name: str | None = None
    role: str | None = None
    banned: bool = False
    ban_reason: str | None = None
    ban_expires: str | None = None
    created_at: str | None = None

    @classmethod
    def of(cls, raw: dict[str, Any]) -> UserOut:
        return cls(
            id=raw["id"],
            email=raw["email"],
            name=raw.get("name"),
            role=raw.get("role"),
            banned=bool(raw.get("banned")),
            ban_reason=raw.get("banReason"),
            ban_expires=raw.get("banExpires"),
            created_at=raw.get("createdAt"),
        )


class UserList(BaseModel):
    users: list[UserOut]
    total: int


class UserDetail(UserOut):
    mappings: list[MappingOut] = Field(default_factory=list)


class RoleIn(BaseModel):
    role: Literal["customer", "operator", "admin"]


class BanIn(BaseModel):
    reason: str | None = Field(default=None, max_length=500)
    expires_in_s: int | None = Field(default=None, ge=60)


class ImpersonateIn(BaseModel):
    user_id: str = Field(min_length=1, max_length=64)


class ImpersonationOut(BaseModel):
    """A short-lived JWT only: the auth service keeps the impersonation's session token."""

    user_id: str
    session_id: str
    jwt: str
    expires_at: str


def _mapped(exc: AuthServiceError) -> ApiError:
    if isinstance(exc, AuthServiceRefused):
        if exc.status == 404:
            return NotFound("user")
        if exc.status == 403:
            return ApiError(403, "FORBIDDEN", exc.message or "refused by the auth service")
        return ApiError(422, "VALIDATION_FAILED", exc.message or exc.code)
    return ApiError(503, "UNAVAILABLE", "the auth service is not reachable")


@router.get("/users", response_model=UserList)
async def list_users(
    _: AdminUser,
    state: State,
    search: Annotated[str | None, Query(max_length=320)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> UserList:
    try:
        page = await auth_client_of(state).list_users(search=search, limit=limit, offset=offset)
    except AuthServiceError as exc:
        raise _mapped(exc) from exc
    return UserList(users=[UserOut.of(u) for u in page["users"]], total=int(page["total"]))


@router.get("/users/{user_id}", response_model=UserDetail)
async def get_user(user_id: str, _: AdminUser, state: State) -> UserDetail:
    try:
        raw = await auth_client_of(state).get_user(user_id)
    except AuthServiceError as exc:
        raise _mapped(exc) from exc
    async with state.sessions() as db:
        mappings = (
            await db.scalars(
                select(UserMapping).where(UserMapping.user_id == user_id).order_by(UserMapping.id)
            )
        ).all()
    return UserDetail(**UserOut.of(raw).model_dump(), mappings=[MappingOut.of(m) for m in mappings])


@router.post("/users/{user_id}/role", response_model=UserOut)
async def set_role(user_id: str, body: RoleIn, admin: LiveAdmin, state: State) -> UserOut:
    if user_id == admin.user_id and body.role != "admin":
        raise ApiError(409, "CONFLICT", "you cannot remove your own admin role")
    client = auth_client_of(state)
    try:
        before = await client.get_user(user_id)
        after = await client.set_role(user_id, body.role)
    except AuthServiceError as exc:
        raise _mapped(exc) from exc
    # This process's cached admin checks must not outlive the change (api/live_sessions.py).
    live_sessions_of(state).forget_user(user_id)
    await write_audit(
        state.sessions,
        admin.actor,
        "user.role_changed",
        subject=user_id,
        source=admin.source,
        details={"from": before.get("role"), "to": body.role},
    )
    return UserOut.of(after)


@router.post("/users/{user_id}/ban", response_model=UserOut)
async def ban_user(user_id: str, body: BanIn, admin: LiveAdmin, state: State) -> UserOut:
    """Ban: the user's sessions end at once; their JWTs stop working on admin and sensitive
    routes now, and everywhere else when they expire (15 minutes)."""
    if user_id == admin.user_id:
        raise ApiError(409, "CONFLICT", "you cannot ban yourself")
    try:
        raw = await auth_client_of(state).ban(
            user_id, reason=body.reason, expires_in_s=body.expires_in_s
        )
    except AuthServiceError as exc:
        raise _mapped(exc) from exc
    live_sessions_of(state).forget_user(user_id)
    await write_audit(
        state.sessions,
        admin.actor,
        "user.banned",
        subject=user_id,
        source=admin.source,
        details=body.model_dump(),
    )
    return UserOut.of(raw)


@router.post("/users/{user_id}/unban", response_model=UserOut)
async def unban_user(user_id: str, admin: LiveAdmin, state: State) -> UserOut:
    try:
        raw = await auth_client_of(state).unban(user_id)
    except AuthServiceError as exc:
        raise _mapped(exc) from exc
    live_sessions_of(state).forget_user(user_id)
    await write_audit(
        state.sessions, admin.actor, "user.unbanned", subject=user_id, source=admin.source
    )
    return UserOut.of(raw)


# -- impersonation ------------------------------------------------------------------------------


@router.post("/impersonation", response_model=ImpersonationOut, status_code=201)
async def start_impersonation(
    body: ImpersonateIn, admin: LiveAdmin, state: State
) -> ImpersonationOut:
    """A read-only session as the driver (an hour at most); every request under it is audited."""
    try:
        started = await auth_client_of(state).impersonate(admin.user_id, body.user_id)
    except AuthServiceError as exc:
        raise _mapped(exc) from exc
    await write_audit(
        state.sessions,
        admin.actor,
        "impersonation.started",
        subject=body.user_id,
        source=admin.source,
        details={"session_id": started["sessionId"], "expires_at": started["expiresAt"]},
    )
    return ImpersonationOut(
        user_id=body.user_id,
        session_id=started["sessionId"],
        jwt=started["jwt"],
        expires_at=started["expiresAt"],
    )


@router.post("/impersonation/stop", status_code=204)
async def stop_impersonation(principal: AnyCurrentUser, state: State) -> None:
    if principal.impersonated_by is None or principal.session_id is None:
        raise ApiError(409, "NOT_IMPERSONATING", "this session is not an impersonation")
    try:
        await auth_client_of(state).revoke_session(principal.session_id)
    except AuthServiceError as exc:
        raise _mapped(exc) from exc
    await write_audit(
        state.sessions,
        principal.actor,
        "impersonation.ended",
        subject=principal.user_id,
        source=principal.source,
        details={"session_id": principal.session_id},
    )
