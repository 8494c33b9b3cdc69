"""Inboxes over HTTP: a driver's (``/api/v1/me/notifications``) and the operators' shared one
(``/api/v1/notifications``, admin and operator, live-checked). Thin over
``services/notifications.py``; docs/notifications.md.

Drivers see only their own notifications (anyone else's id answers 404); marking read or
archiving is a write, so an impersonation session gets 403 ``IMPERSONATION_READ_ONLY``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel

from api.authz import CurrentUser, LiveOperator
from api.services import Services
from services import notifications
from services.notifications import Inbox

router = APIRouter(prefix="/api/v1", tags=["notifications"])

NotificationId = Annotated[int, Path(ge=1, le=2**63 - 1)]
Unread = Annotated[
    bool | None, Query(description="true: only unread; false: only read; absent: both")
]
Archived = Annotated[bool, Query(description="true: the archive instead of the inbox")]
BeforeId = Annotated[
    int | None, Query(ge=1, le=2**63 - 1, description="the page after this id (next_before_id)")
]
Limit = Annotated[int, Query(ge=1, le=notifications.MAX_PAGE)]


class NotificationOut(BaseModel):
    id: int
    kind: str
    title: str
    data: dict[str, Any]
    created_at: datetime
    # The caller's own marks (each operator has theirs on the shared inbox).
    read_at: datetime | None
    archived_at: datetime | None


class NotificationPage(BaseModel):
    notifications: list[NotificationOut]
    # Pass as ``before_id`` for the next (older) page; null: this was the last one.
    next_before_id: int | None


class UnreadCount(BaseModel):
    unread: int


class MarkedAll(BaseModel):
    marked_read: int


# -- a driver's inbox -----------------------------------------------------------------------------


@router.get(
    "/me/notifications", response_model=NotificationPage, summary="My notifications, newest first"
)
async def my_notifications(
    user: CurrentUser,
    ctx: Services,
    unread: Unread = None,
    archived: Archived = False,
    before_id: BeforeId = None,
    limit: Limit = 50,
) -> dict[str, Any]:
    return await notifications.list_notifications(
        ctx,
        Inbox.of_driver(user.user_id),
        unread=unread,
        archived=archived,
        before_id=before_id,
        limit=limit,
    )


@router.get(
    "/me/notifications/unread-count",
    response_model=UnreadCount,
    summary="How many of my notifications are unread (archived ones not counted)",
)
async def my_unread_count(user: CurrentUser, ctx: Services) -> UnreadCount:
    return UnreadCount(unread=await notifications.unread_count(ctx, Inbox.of_driver(user.user_id)))


@router.post(
    "/me/notifications/read-all",
    response_model=MarkedAll,
    summary="Mark all my notifications read",
)
async def my_read_all(user: CurrentUser, ctx: Services) -> MarkedAll:
    count = await notifications.mark_all_read(ctx, Inbox.of_driver(user.user_id))
    return MarkedAll(marked_read=count)


@router.post(
    "/me/notifications/{notification_id}/read",
    response_model=NotificationOut,
    summary="Mark one of my notifications read (404: not mine)",
)
async def my_read(notification_id: NotificationId, user: CurrentUser, ctx: Services) -> Any:
    return await notifications.mark_read(ctx, Inbox.of_driver(user.user_id), notification_id)


@router.post(
    "/me/notifications/{notification_id}/archive",
    response_model=NotificationOut,
    summary="Move one of my notifications to the archive (404: not mine)",
)
async def my_archive(notification_id: NotificationId, user: CurrentUser, ctx: Services) -> Any:
    return await notifications.archive(ctx, Inbox.of_driver(user.user_id), notification_id)


# -- the operators' shared inbox ------------------------------------------------------------------


@router.get(
    "/notifications",
    response_model=NotificationPage,
    summary="The operators' inbox (shared; read and archive marks are each operator's own)",
)
async def operator_notifications(
    principal: LiveOperator,
    ctx: Services,
    unread: Unread = None,
    archived: Archived = False,
    before_id: BeforeId = None,
    limit: Limit = 50,
) -> dict[str, Any]:
    return await notifications.list_notifications(
        ctx,
        Inbox.of_operator(principal.user_id),
        unread=unread,
        archived=archived,
        before_id=before_id,
        limit=limit,
    )


@router.get(
    "/notifications/unread-count",
    response_model=UnreadCount,
    summary="How many notifications of the operators' inbox I have not read",
)
async def operator_unread_count(principal: LiveOperator, ctx: Services) -> UnreadCount:
    inbox = Inbox.of_operator(principal.user_id)
    return UnreadCount(unread=await notifications.unread_count(ctx, inbox))


@router.post(
    "/notifications/read-all",
    response_model=MarkedAll,
    summary="Mark every notification of the operators' inbox read (for me)",
)
async def operator_read_all(principal: LiveOperator, ctx: Services) -> MarkedAll:
    count = await notifications.mark_all_read(ctx, Inbox.of_operator(principal.user_id))
    return MarkedAll(marked_read=count)


@router.post(
    "/notifications/{notification_id}/read",
    response_model=NotificationOut,
    summary="Mark a notification of the operators' inbox read (for me)",
)
async def operator_read(
    notification_id: NotificationId, principal: LiveOperator, ctx: Services
) -> Any:
    inbox = Inbox.of_operator(principal.user_id)
    return await notifications.mark_read(ctx, inbox, notification_id)


@router.post(
    "/notifications/{notification_id}/archive",
    response_model=NotificationOut,
    summary="Archive a notification of the operators' inbox (for me)",
)
async def operator_archive(
    notification_id: NotificationId, principal: LiveOperator, ctx: Services
) -> Any:
    return await notifications.archive(ctx, Inbox.of_operator(principal.user_id), notification_id)
