"""Operators: the audit log (newest first, keyset-paged by id)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from api.authz import AdminUser
from api.deps import State
from api.identity_views import AuditOut
from db.models import AuditLog

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])


@router.get("", response_model=list[AuditOut])
async def audit_log(
    _: AdminUser,
    state: State,
    action: Annotated[str | None, Query(max_length=64)] = None,
    actor: Annotated[str | None, Query(max_length=255)] = None,
    subject: Annotated[str | None, Query(max_length=255)] = None,
    before_id: Annotated[int | None, Query(ge=1)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[AuditOut]:
    query = select(AuditLog).order_by(AuditLog.id.desc()).limit(limit)
    if action:
        # "card." matches every card action; an exact action matches itself.
        query = query.where(
            AuditLog.action.startswith(action)
            if action.endswith(".")
            else AuditLog.action == action
        )
    if actor:
        query = query.where(AuditLog.actor == actor)
    if subject:
        query = query.where(AuditLog.subject == subject)
    if before_id:
        query = query.where(AuditLog.id < before_id)
    async with state.sessions() as db:
        rows = (await db.scalars(query)).all()
    return [AuditOut.of(row) for row in rows]
