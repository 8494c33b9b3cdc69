"""charger.offline: one event per offline episode, from the periodic watch on a real worker."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import jsonschema
import pytest
from sqlalchemy import select, update
from temporalio.client import Client
from temporalio.worker import Worker

from activities.live import LiveActivities
from config.settings import Settings
from db.engine import SessionFactory
from db.models import Charger, PlatformEvent, Site
from domain.events import CHARGER_OFFLINE
from domain.webhook_schemas import DATA_SCHEMAS
from tests.helpers import eventually
from worker import build_worker
from workflows.charger_offline_events import (
    AnnounceOfflineInput,
    ChargerOfflineEventsWorkflow,
    OfflineEventsInput,
)


@pytest.fixture
async def worker(
    temporal_client: Client,
    base_settings: Settings,
    session_factory: SessionFactory,
    task_queue: str,
) -> AsyncIterator[Worker]:
    w = build_worker(temporal_client, base_settings, session_factory, task_queue=task_queue)
    async with w:
        yield w


async def offline_events(factory: SessionFactory, charge_box_id: str) -> list[PlatformEvent]:
    async with factory() as db:
        return list(
            (
                await db.scalars(
                    select(PlatformEvent)
                    .where(
                        PlatformEvent.charge_box_id == charge_box_id,
                        PlatformEvent.type == CHARGER_OFFLINE,
                    )
                    .order_by(PlatformEvent.id)
                )
            ).all()
        )


async def test_a_silent_charger_is_announced_once_per_offline_episode(
    temporal_client: Client,
    worker: Worker,
    session_factory: SessionFactory,
    task_queue: str,
) -> None:
    tag = uuid.uuid4().hex[:8]
    silent, alive, never = f"OFF-{tag}-S", f"OFF-{tag}-A", f"OFF-{tag}-N"
    now = datetime.now(UTC)
    async with session_factory.begin() as db:
        site = Site(name=f"Offline site {tag}")
        db.add(site)
        await db.flush()
        db.add_all(
            [
                Charger(
                    charge_box_id=silent, site_id=site.id, last_seen_at=now - timedelta(hours=2)
                ),
                Charger(charge_box_id=alive, last_seen_at=now + timedelta(hours=1)),
                Charger(charge_box_id=never),  # never seen: never "went" offline
            ]
        )
    handle = await temporal_client.start_workflow(
        ChargerOfflineEventsWorkflow.run,
        OfflineEventsInput(interval_s=0.2, silence_s=60, iterations_per_run=5),
        id=f"offline-events-{tag}",
        task_queue=task_queue,
    )
    try:
        first = await eventually(lambda: offline_events(session_factory, silent), timeout=60)
        assert len(first) == 1
        assert first[0].site_id == site.id and first[0].subject == silent
        assert first[0].payload["charge_box_id"] == silent
        assert first[0].payload["silent_for_s"] >= 7200 - 5
        jsonschema.validate(first[0].payload, DATA_SCHEMAS[CHARGER_OFFLINE])
        # The same episode is never announced again, whoever asks (a retry, another worker).
        again = await LiveActivities(session_factory).announce_offline_chargers(
            AnnounceOfflineInput(silence_s=60)
        )
        assert silent not in again.charge_box_ids
        # Seen again after the report, then silent again: a second episode (the clock moved
        # back by three hours instead of waiting for them).
        async with session_factory.begin() as db:
            await db.execute(
                update(Charger)
                .where(Charger.charge_box_id == silent)
                .values(
                    offline_reported_at=now - timedelta(hours=3),
                    last_seen_at=now - timedelta(hours=2),
                )
            )

        async def two_episodes() -> list[PlatformEvent]:
            found = await offline_events(session_factory, silent)
            assert len(found) == 2
            return found

        second = await eventually(two_episodes, timeout=60)
        assert [e.type for e in second] == [CHARGER_OFFLINE, CHARGER_OFFLINE]
        assert await offline_events(session_factory, alive) == []
        assert await offline_events(session_factory, never) == []
    finally:
        await handle.terminate()
