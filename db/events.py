"""Recording platform events: one row in ``platform_events`` and a ``NOTIFY`` on commit.

:func:`record_event` runs inside the caller's transaction, so an event exists exactly when the
change it describes was committed (a rolled-back change leaves no event, and PostgreSQL delivers
the ``NOTIFY`` only on commit). The notification carries just the row id; listeners read the rows
after the last id they saw, which is also how a reconnecting SSE client (``Last-Event-ID``) and
the webhook dispatcher catch up: nothing depends on one process having been listening.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, String, Text, cast, func, insert, literal, null, select, true
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import CTE, ScalarSelect

from db.models import PlatformEvent
from domain.events import EVENT_TYPES

# The PostgreSQL channel every API process LISTENs on.
EVENTS_CHANNEL = "polaris_events"


async def record_event(
    db: AsyncSession | AsyncConnection,
    type: str,
    payload: dict[str, Any],
    *,
    subject: str | None = None,
    charge_box_id: str | None = None,
    site_id: int | ScalarSelect[Any] | ColumnElement[Any] | None = None,
    user_id: str | None = None,
) -> int:
    """Add the event to the caller's transaction; returns its id. ``user_id``: the driver whose
    data it is (their stream and webhooks see it); ``charge_box_id``/``site_id``: where
    (``site_id`` may be a scalar subquery, e.g. the charger's site, resolved in the same
    statement).

    One round trip: the insert and the ``pg_notify`` are one statement (the gateway records
    events in its journal transaction, on its hot path).
    """
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r} (add it to domain/events.py)")
    inserted = (
        insert(PlatformEvent)
        .values(
            type=type,
            payload=payload,
            subject=subject,
            charge_box_id=charge_box_id,
            site_id=site_id,
            user_id=user_id,
        )
        .returning(PlatformEvent.id)
        .cte("inserted")
    )
    announce = select(inserted.c.id, func.pg_notify(EVENTS_CHANNEL, cast(inserted.c.id, Text)))
    event_id: int = (await db.execute(announce)).scalars().one()
    return event_id


def recorded_with(
    changed: CTE,
    type: str,
    payload: dict[str, Any],
    *,
    subject: str | None = None,
    charge_box_id: str | None = None,
    site_id: ScalarSelect[Any] | None = None,
) -> Select[Any]:
    """A change and its event in one statement: ``changed`` is a data-modifying CTE returning at
    most one row (e.g. an upsert that may not apply); the SELECT returned yields that row with
    the ``event_id`` of an event inserted and announced for it, or no row and no event."""
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r} (add it to domain/events.py)")
    inserted = (
        insert(PlatformEvent)
        .from_select(
            ["type", "payload", "subject", "charge_box_id", "site_id"],
            select(
                literal(type, String),
                literal(payload, JSONB),
                literal(subject, String),
                literal(charge_box_id, String),
                site_id if site_id is not None else null(),
            ).select_from(changed),
        )
        .returning(PlatformEvent.id)
        .cte("inserted")
    )
    return select(
        *changed.c,
        inserted.c.id.label("event_id"),
        func.pg_notify(EVENTS_CHANNEL, cast(inserted.c.id, Text)),
    ).select_from(changed.join(inserted, true()))


__all__ = ["EVENTS_CHANNEL", "record_event", "recorded_with"]
