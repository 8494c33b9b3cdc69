"""A signal handled while the read model is being written reaches the read model at once.

Before the ``session-read-model-catch-up-v1`` patch, the session's loop counted such a signal as
heard and waited for the next one: ``charging_sessions`` kept the older energy until the charger
spoke again (a driver's screen showed 1000 Wh while the workflow knew 2500). The session
activities are the real ones; the test only holds the read-model write at a chosen moment.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from temporalio import activity
from temporalio.client import Client
from temporalio.worker import Worker

from activities.sessions import (
    ACTIVITY_UPSERT_SESSION,
    ReadModelWritten,
    SessionActivities,
    SessionReadModel,
)
from config.settings import Settings
from db.engine import SessionFactory
from tests.helpers import eventually
from tests.workflows.conftest import Seed, at
from tests.workflows.test_charging_session import read_model, started, tap, tx_id
from worker import build_worker
from workflows.charging_session import ChargingSessionWorkflow
from workflows.messages import MeterProgress


class HeldSessionActivities(SessionActivities):
    """The real activities; ``hold()`` makes the next read-model write wait for ``release()``."""

    def __init__(self, sf: SessionFactory) -> None:
        super().__init__(sf)
        self._held = False
        self.entered = asyncio.Event()
        self._gate = asyncio.Event()

    def hold(self) -> None:
        self._held, self._gate = True, asyncio.Event()
        self.entered.clear()

    def release(self) -> None:
        self._held = False
        self._gate.set()

    @activity.defn(name=ACTIVITY_UPSERT_SESSION)
    async def upsert_session_read_model(self, input: SessionReadModel) -> ReadModelWritten:
        if self._held:
            self.entered.set()
            await self._gate.wait()
        return await super().upsert_session_read_model(input)


@pytest.fixture
async def held_worker(
    temporal_client: Client,
    session_settings: Settings,
    session_factory: SessionFactory,
    task_queue: str,
) -> AsyncIterator[tuple[Worker, HeldSessionActivities]]:
    sessions = HeldSessionActivities(session_factory)
    worker = build_worker(
        temporal_client, session_settings, session_factory, task_queue=task_queue, sessions=sessions
    )
    async with worker:
        yield worker, sessions


async def test_a_signal_during_the_write_reaches_the_read_model_without_another(
    temporal_client: Client,
    held_worker: tuple[Worker, HeldSessionActivities],
    task_queue: str,
    seed: Seed,
    session_factory: SessionFactory,
) -> None:
    _, sessions = held_worker
    cb = await seed.charger()
    tag = await seed.card("catch-up")
    result, handle = await tap(temporal_client, task_queue, cb, tag)
    assert result.status == "Accepted"
    tx = tx_id()
    await handle.signal(ChargingSessionWorkflow.transaction_started, started(1, tx, cb, tag, 0))

    async def charging() -> bool:
        row = await read_model(session_factory, handle.id)
        return row is not None and row.state == "charging"

    await eventually(charging, message="the session charging in the read model")

    sessions.hold()
    await handle.signal(
        ChargingSessionWorkflow.meter_progress,
        MeterProgress(event_id=2, transaction_id=tx, energy_register_wh=1000, sampled_at=at(5)),
    )
    await asyncio.wait_for(sessions.entered.wait(), 60)  # the write of 1000 Wh is held
    await handle.signal(
        ChargingSessionWorkflow.meter_progress,
        MeterProgress(event_id=3, transaction_id=tx, energy_register_wh=2500, sampled_at=at(8)),
    )

    async def known() -> bool:  # the workflow knows it while the write is held
        return (await handle.query(ChargingSessionWorkflow.status)).energy_wh == 2500

    await eventually(known, message="the workflow at 2500 Wh")
    sessions.release()

    async def caught_up() -> bool:
        row = await read_model(session_factory, handle.id)
        return row is not None and row.energy_wh == 2500

    # No further signal: the workflow itself writes the newer state.
    await eventually(caught_up, message="the read model at 2500 Wh without another signal")
