"""One PostgreSQL listener per API process, fanning platform events out to its stream clients.

The hub holds one psycopg connection that ``LISTEN``s on ``polaris_events`` (``db/events.py``).
A notification only says "something was committed": the hub then reads the rows after the last
id it delivered (its *watermark*) and hands them, in id order, to every subscriber whose filter
accepts them. It also reads on a short timer, so a notification lost with a dropped connection
only delays an event; after reconnecting it catches up from the watermark.

Ids come from a sequence, so a transaction holding a smaller id may commit after one holding a
larger id. The hub delivers strictly in id order: when the next id is missing while later ones
are visible it waits up to ``stream_gap_grace_s`` for it (a late commit) before moving past it (a
rolled-back transaction never fills it). Every client therefore sees increasing ids, and its
``Last-Event-ID`` is a faithful resume point.

Each subscriber has a bounded queue; one that falls ``stream_queue_size`` events behind is closed
(its client reconnects with ``Last-Event-ID`` and catches up from the database), so a slow client
never grows this process's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from sqlalchemy import func, select

from config.settings import Settings, libpq_url
from db.engine import SessionFactory
from db.events import EVENTS_CHANNEL
from db.models import PlatformEvent

log = logging.getLogger(__name__)

READ_BATCH = 500
# Re-read the table at least this often even without a notification (a lost NOTIFY).
IDLE_POLL_S = 5.0
RECONNECT_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)


@dataclass(frozen=True, slots=True)
class StreamEvent:
    id: int
    type: str
    occurred_at: datetime
    subject: str | None
    charge_box_id: str | None
    site_id: int | None
    user_id: str | None
    payload: dict[str, Any]

    @classmethod
    def of(cls, row: PlatformEvent) -> StreamEvent:
        return cls(
            id=row.id,
            type=row.type,
            occurred_at=row.occurred_at,
            subject=row.subject,
            charge_box_id=row.charge_box_id,
            site_id=row.site_id,
            user_id=row.user_id,
            payload=dict(row.payload or {}),
        )


class Subscriber:
    """One client's bounded queue; ``None`` from :meth:`next` means the stream must end."""

    def __init__(self, accepts: Callable[[StreamEvent], bool], limit: int) -> None:
        self.accepts = accepts
        self._limit = limit
        self._queue: asyncio.Queue[StreamEvent | None] = asyncio.Queue()
        self.closed = False
        self.overflowed = False

    def offer(self, event: StreamEvent) -> None:
        if self.closed or not self.accepts(event):
            return
        if self._queue.qsize() >= self._limit:
            self.overflowed = True
            self.close()
            return
        self._queue.put_nowait(event)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._queue.put_nowait(None)

    async def next(self) -> StreamEvent | None:
        return await self._queue.get()


class EventHub:
    def __init__(self, settings: Settings, sessions: SessionFactory) -> None:
        self._settings = settings
        self._sessions = sessions
        self._subscribers: set[Subscriber] = set()
        self._task: asyncio.Task[None] | None = None
        self.watermark = 0
        self._gap_for: int | None = None
        self._gap_since = 0.0
        self._stopping = False
        self.reconnects = 0

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    async def start(self) -> None:
        async with self._sessions() as db:
            self.watermark = int(
                await db.scalar(select(func.coalesce(func.max(PlatformEvent.id), 0))) or 0
            )
        self._task = asyncio.create_task(self._run(), name="live-event-hub")

    async def stop(self) -> None:
        """Close every subscriber (their streams end) and the listener."""
        self._stopping = True
        for subscriber in list(self._subscribers):
            subscriber.close()
        self._subscribers.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    def subscribe(self, accepts: Callable[[StreamEvent], bool]) -> Subscriber:
        subscriber = Subscriber(accepts, self._settings.stream_queue_size)
        if self._stopping:
            subscriber.close()
        else:
            self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)
        subscriber.close()

    # -- the listener ---------------------------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        url = libpq_url(self._settings.require_database_url())
        while not self._stopping:
            try:
                conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
            except (psycopg.Error, OSError) as exc:
                delay = RECONNECT_BACKOFF_S[min(attempt, len(RECONNECT_BACKOFF_S) - 1)]
                log.warning(
                    "live events: cannot connect to PostgreSQL (%s); retry in %ss", exc, delay
                )
                attempt += 1
                await asyncio.sleep(delay)
                continue
            try:
                await conn.execute(f"LISTEN {EVENTS_CHANNEL}")
                if attempt or self.reconnects:
                    log.info(
                        "live events: listening again; catching up after id %s", self.watermark
                    )
                attempt = 0
                await self._catch_up()  # whatever was committed while nobody listened
                while not self._stopping:
                    wait_s = IDLE_POLL_S
                    if self._gap_for is not None:
                        wait_s = max(0.05, min(wait_s, self._settings.stream_gap_grace_s / 2))
                    async for _ in conn.notifies(timeout=wait_s, stop_after=1):
                        pass
                    await self._catch_up()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a lost connection (or a failed read): reconnect
                self.reconnects += 1
                log.warning("live events: listener lost (%s); reconnecting", exc)
                await asyncio.sleep(RECONNECT_BACKOFF_S[0])
            finally:
                with contextlib.suppress(Exception):
                    await conn.close()

    async def _catch_up(self) -> None:
        while True:
            async with self._sessions() as db:
                rows = (
                    await db.scalars(
                        select(PlatformEvent)
                        .where(PlatformEvent.id > self.watermark)
                        .order_by(PlatformEvent.id)
                        .limit(READ_BATCH)
                    )
                ).all()
            delivered = 0
            for row in rows:
                expected = self.watermark + 1
                if row.id != expected and not self._gap_passed(expected):
                    return
                self._gap_for = None
                self._deliver(StreamEvent.of(row))
                delivered += 1
            if len(rows) < READ_BATCH or delivered == 0:
                return

    def _gap_passed(self, expected: int) -> bool:
        """Has the missing id ``expected`` been waited for long enough?"""
        now = time.monotonic()
        if self._gap_for != expected:
            self._gap_for, self._gap_since = expected, now
        return now - self._gap_since >= self._settings.stream_gap_grace_s

    def _deliver(self, event: StreamEvent) -> None:
        self.watermark = event.id
        for subscriber in list(self._subscribers):
            subscriber.offer(event)
            if subscriber.closed:
                self._subscribers.discard(subscriber)


__all__ = ["EventHub", "StreamEvent", "Subscriber"]
