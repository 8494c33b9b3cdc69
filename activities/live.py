"""Activities behind the platform events that no single write announces: ``charger.offline``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import or_, update
from temporalio import activity

from db.engine import SessionFactory
from db.events import record_event
from db.models import Charger
from domain.events import CHARGER_OFFLINE
from workflows.charger_offline_events import (
    ACTIVITY_ANNOUNCE_OFFLINE_CHARGERS,
    AnnounceOfflineInput,
    AnnounceOfflineResult,
)


class LiveActivities:
    def __init__(self, session_factory: SessionFactory) -> None:
        self._sessions = session_factory

    @activity.defn(name=ACTIVITY_ANNOUNCE_OFFLINE_CHARGERS)
    async def announce_offline_chargers(self, input: AnnounceOfflineInput) -> AnnounceOfflineResult:
        """Mark every charger silent for ``silence_s`` and not yet reported since it was last
        seen, and record its ``charger.offline``, in one transaction: a retry (or a second
        worker) finds them marked and announces nothing twice."""
        now = datetime.now(UTC)
        cutoff = now - timedelta(seconds=input.silence_s)
        c = Charger
        async with self._sessions.begin() as db:
            rows = (
                await db.execute(
                    update(c)
                    .where(
                        c.decommissioned_at.is_(None),
                        c.last_seen_at.is_not(None),
                        c.last_seen_at < cutoff,
                        or_(
                            c.offline_reported_at.is_(None), c.offline_reported_at < c.last_seen_at
                        ),
                    )
                    .values(offline_reported_at=now)
                    .returning(c.charge_box_id, c.site_id, c.last_seen_at, c.connected)
                )
            ).all()
            for row in sorted(rows, key=lambda r: r.charge_box_id):
                await record_event(
                    db,
                    CHARGER_OFFLINE,
                    {
                        "charge_box_id": row.charge_box_id,
                        "last_seen_at": row.last_seen_at.isoformat(),
                        "silent_for_s": int((now - row.last_seen_at).total_seconds()),
                        "socket_open": row.connected,
                    },
                    subject=row.charge_box_id,
                    charge_box_id=row.charge_box_id,
                    site_id=row.site_id,
                )
        return AnnounceOfflineResult(charge_box_ids=sorted(r.charge_box_id for r in rows))


__all__ = ["LiveActivities"]
