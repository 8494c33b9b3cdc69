"""Activities that write notifications (docs/notifications.md): the charger-offline check."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, or_, select
from temporalio import activity

from config.settings import Settings
from db.engine import SessionFactory
from db.models import Charger
from db.notifications import CHARGER_OFFLINE, notify
from workflows.charger_offline import (
    ACTIVITY_NOTIFY_OFFLINE_CHARGERS,
    NotifyOfflineChargersInput,
    NotifyOfflineChargersResult,
)

# A charger still connected counts as offline only once it missed this many heartbeats (the
# rule of connector availability); a disconnected one from its last message.
HEARTBEATS_MISSED = 3
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def offline_episode_key(charge_box_id: str, last_seen_epoch_us: int) -> str:
    """One offline episode: the charger, and the last time it was heard before it."""
    return f"{CHARGER_OFFLINE}:{charge_box_id}:{last_seen_epoch_us}"


class NotificationActivities:
    def __init__(self, settings: Settings, session_factory: SessionFactory) -> None:
        self._settings = settings
        self._sessions = session_factory

    @activity.defn(name=ACTIVITY_NOTIFY_OFFLINE_CHARGERS)
    async def notify_offline_chargers(
        self, input: NotifyOfflineChargersInput
    ) -> NotifyOfflineChargersResult:
        """One notification per charger and offline episode, for chargers (not decommissioned,
        heard from at least once) silent for longer than the threshold."""
        after_min = input.after_min or self._settings.notify_charger_offline_after_min
        silent = timedelta(seconds=self._settings.heartbeat_interval_s * HEARTBEATS_MISSED)
        now = func.now()
        query = (
            select(Charger.charge_box_id, Charger.last_seen_at, Charger.site_id, Charger.label)
            .where(
                Charger.decommissioned_at.is_(None),
                Charger.last_seen_at.is_not(None),
                Charger.last_seen_at < now - timedelta(minutes=after_min),
                or_(Charger.connected.is_(False), Charger.last_seen_at < now - silent),
            )
            .order_by(Charger.charge_box_id)
        )
        offline: list[str] = []
        notified: list[str] = []
        async with self._sessions() as db, db.begin():
            for charge_box_id, last_seen_at, site_id, label in (await db.execute(query)).all():
                if last_seen_at is None:  # excluded by the query; for the type checker
                    continue
                offline.append(charge_box_id)
                epoch_us = (last_seen_at - EPOCH) // timedelta(microseconds=1)
                minutes = int(after_min)
                new_id = await notify(
                    db,
                    audience="operators",
                    kind=CHARGER_OFFLINE,
                    dedupe_key=offline_episode_key(charge_box_id, epoch_us),
                    title=f"Charger {label or charge_box_id} offline for over {minutes} min",
                    data={
                        "charge_box_id": charge_box_id,
                        "site_id": site_id,
                        "last_seen_at": last_seen_at.isoformat(),
                        "after_min": after_min,
                    },
                )
                if new_id is not None:
                    notified.append(charge_box_id)
        return NotifyOfflineChargersResult(offline=offline, notified=notified)


__all__ = ["HEARTBEATS_MISSED", "NotificationActivities", "offline_episode_key"]
