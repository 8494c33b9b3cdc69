"""Inboxes: a driver's own, and the operators' shared one (docs/notifications.md).

An :class:`Inbox` is whose notifications are read and whose marks apply:

- a driver's inbox: the rows with ``audience='user'`` and their ``user_id``; the read and archive
  marks are the row's own ``read_at``/``archived_at`` (one reader);
- the operators' inbox: the rows with ``audience='operators'``, shared by every operator; each
  operator's read and archive marks are rows of ``notification_marks`` (one per operator and
  notification, written when the operator first marks it), so one operator reading a card-lost
  alert leaves it unread for the others.

A notification outside the caller's inbox is a :class:`~services.errors.NotFound`, exactly like
one that does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, literal, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.billing_models import AUDIENCE_OPERATORS, AUDIENCE_USER, Notification, NotificationMark
from services.context import ServiceContext
from services.errors import NotFound

MAX_PAGE = 200


@dataclass(frozen=True)
class Inbox:
    """``user_id``: the reader (a driver, or the operator whose marks apply)."""

    user_id: str
    operators: bool = False

    @classmethod
    def of_driver(cls, user_id: str) -> Inbox:
        return cls(user_id)

    @classmethod
    def of_operator(cls, user_id: str) -> Inbox:
        return cls(user_id, operators=True)


def _marks(inbox: Inbox) -> Any:
    return (
        select(NotificationMark).where(NotificationMark.user_id == inbox.user_id).subquery("marks")
    )


def _rows(inbox: Inbox) -> tuple[Any, Any, Any]:
    """(select of the inbox's notifications with their marks, read_at, archived_at)."""
    if not inbox.operators:
        statement = select(Notification, Notification.read_at, Notification.archived_at).where(
            Notification.audience == AUDIENCE_USER, Notification.user_id == inbox.user_id
        )
        return statement, Notification.read_at, Notification.archived_at
    marks = _marks(inbox)
    statement = (
        select(Notification, marks.c.read_at, marks.c.archived_at)
        .outerjoin(marks, marks.c.notification_id == Notification.id)
        .where(Notification.audience == AUDIENCE_OPERATORS)
    )
    return statement, marks.c.read_at, marks.c.archived_at


def _out(
    row: Notification, read_at: datetime | None, archived_at: datetime | None
) -> dict[str, Any]:
    return {
        "id": row.id,
        "kind": row.kind,
        "title": row.title,
        "data": row.data,
        "created_at": row.created_at,
        "read_at": read_at,
        "archived_at": archived_at,
    }


async def list_notifications(
    ctx: ServiceContext,
    inbox: Inbox,
    *,
    unread: bool | None = None,
    archived: bool = False,
    before_id: int | None = None,
    limit: int = 50,
) -> dict[str, Any]:
    """Newest first. ``archived``: the archive instead of the inbox; ``unread``: only unread
    (True) or only read (False) ones; ``before_id``: the page after the one ending there."""
    statement, read_at, archived_at = _rows(inbox)
    statement = statement.where(archived_at.is_not(None) if archived else archived_at.is_(None))
    if unread is not None:
        statement = statement.where(read_at.is_(None) if unread else read_at.is_not(None))
    if before_id is not None:
        statement = statement.where(Notification.id < before_id)
    limit = max(1, min(limit, MAX_PAGE))
    statement = statement.order_by(Notification.id.desc()).limit(limit + 1)
    async with ctx.sessions() as db:
        rows = (await db.execute(statement)).all()
    items = [_out(*row) for row in rows[:limit]]
    return {
        "notifications": items,
        "next_before_id": items[-1]["id"] if len(rows) > limit else None,
    }


async def unread_count(ctx: ServiceContext, inbox: Inbox) -> int:
    """Unread notifications in the inbox (archived ones are not counted)."""
    statement, read_at, archived_at = _rows(inbox)
    counted = (
        statement.with_only_columns(func.count())
        .where(read_at.is_(None), archived_at.is_(None))
        .order_by(None)
    )
    async with ctx.sessions() as db:
        count: int = (await db.execute(counted)).scalar_one()
    return count


async def _one(db: AsyncSession, inbox: Inbox, notification_id: int) -> dict[str, Any]:
    statement, _, _ = _rows(inbox)
    row = (await db.execute(statement.where(Notification.id == notification_id))).one_or_none()
    if row is None:
        raise NotFound(f"no notification {notification_id}")
    return _out(*row)


async def _mark(
    ctx: ServiceContext, inbox: Inbox, notification_id: int, *, archive: bool
) -> dict[str, Any]:
    """Read (and, with ``archive``, archived) — the first mark's time is kept."""
    async with ctx.sessions() as db, db.begin():
        await _one(db, inbox, notification_id)  # 404 unless it is in this inbox
        now = func.now()
        if inbox.operators:
            values: dict[str, Any] = {
                "notification_id": notification_id,
                "user_id": inbox.user_id,
                "read_at": now,
                "archived_at": now if archive else None,
            }
            statement = insert(NotificationMark).values(**values)
            keep = {
                "read_at": func.coalesce(NotificationMark.read_at, statement.excluded.read_at),
                "archived_at": func.coalesce(
                    NotificationMark.archived_at, statement.excluded.archived_at
                ),
            }
            await db.execute(
                statement.on_conflict_do_update(
                    index_elements=["notification_id", "user_id"], set_=keep
                )
            )
        else:
            changes: dict[str, Any] = {"read_at": func.coalesce(Notification.read_at, now)}
            if archive:
                changes["archived_at"] = func.coalesce(Notification.archived_at, now)
            await db.execute(
                update(Notification).where(Notification.id == notification_id).values(**changes)
            )
        return await _one(db, inbox, notification_id)


async def mark_read(ctx: ServiceContext, inbox: Inbox, notification_id: int) -> dict[str, Any]:
    return await _mark(ctx, inbox, notification_id, archive=False)


async def archive(ctx: ServiceContext, inbox: Inbox, notification_id: int) -> dict[str, Any]:
    """Out of the inbox into the archive (and read)."""
    return await _mark(ctx, inbox, notification_id, archive=True)


async def mark_all_read(ctx: ServiceContext, inbox: Inbox) -> int:
    """Every unread notification of the inbox read; returns how many were unread."""
    async with ctx.sessions() as db, db.begin():
        if not inbox.operators:
            result = await db.execute(
                update(Notification)
                .where(
                    Notification.audience == AUDIENCE_USER,
                    Notification.user_id == inbox.user_id,
                    Notification.read_at.is_(None),
                )
                .values(read_at=func.now())
                .returning(Notification.id)
            )
            return len(result.all())
        marks = _marks(inbox)
        unread = (
            select(Notification.id, literal(inbox.user_id), func.now())
            .outerjoin(marks, marks.c.notification_id == Notification.id)
            .where(Notification.audience == AUDIENCE_OPERATORS, marks.c.read_at.is_(None))
        )
        statement = insert(NotificationMark).from_select(
            ["notification_id", "user_id", "read_at"], unread
        )
        result = await db.execute(
            statement.on_conflict_do_update(
                index_elements=["notification_id", "user_id"],
                set_={"read_at": statement.excluded.read_at},
            ).returning(NotificationMark.notification_id)
        )
        return len(result.all())


__all__ = [
    "Inbox",
    "archive",
    "list_notifications",
    "mark_all_read",
    "mark_read",
    "unread_count",
]
