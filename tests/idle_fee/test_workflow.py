"""IdleFeeWorkflow in the time-skipping environment, with its real activities on the real
PostgreSQL: the watch and the cap end a wait that no free status ends, a charger gone offline is
billed up to when it was last seen, a free status within the grace costs nothing.

Regenerate ``tests/histories/idle_fee_v1.json`` (only on purpose) with
``POLARIS_RECORD_HISTORIES=1 pytest tests/idle_fee/test_workflow.py -k watch``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert, select
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.idle_fee import IdleFeeActivities
from config.settings import Settings
from db.engine import SessionFactory
from db.idle_fee_models import IdleFeeLine
from db.models import Charger, ChargingSession, Tariff, TariffVersion, Transaction
from workflows.idle_fee import IdleFeeWorkflow
from workflows.idle_fee_messages import (
    SIGNAL_IDLE_STATUS,
    IdleFeeInput,
    IdleFeeOutcome,
    idle_fee_workflow_id,
)

HISTORY = Path(__file__).resolve().parent.parent / "histories" / "idle_fee_v1.json"

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def idle_worker(
    time_skipping_env: WorkflowEnvironment,
    base_settings: Settings,
    session_factory: SessionFactory,
    task_queue: str,
) -> AsyncIterator[Worker]:
    activities = IdleFeeActivities(base_settings, session_factory)
    worker = Worker(
        time_skipping_env.client,
        task_queue=task_queue,
        workflows=[IdleFeeWorkflow],
        activities=[
            activities.context,
            activities.charger_seen,
            activities.record,
            activities.send,
        ],
    )
    async with worker:
        yield worker


async def stopped_session(
    sf: SessionFactory,
    *,
    stopped_at: datetime,
    grace_min: int = 0,
    price: int = 10,
    cap: int | None = None,
    connected: bool = True,
    last_seen_at: datetime | None = None,
) -> tuple[str, str]:
    """A charger, a tariff with idle terms, a stopped transaction and its session row (no Lago
    customer: the line is recorded, not sent). (charge box id, session workflow id)."""
    cb = f"CB-{uuid.uuid4().hex[:10]}"
    workflow_id = f"session:{cb}:{uuid.uuid4().hex[:8]}"
    async with sf.begin() as db:
        tariff_id = await db.scalar(
            insert(Tariff)
            .values(code=f"t-{cb}", currency="EUR", price_per_kwh_minor=30)
            .returning(Tariff.id)
        )
        version_id = await db.scalar(
            insert(TariffVersion)
            .values(
                tariff_id=tariff_id,
                version=1,
                valid_from=stopped_at - timedelta(days=1),
                currency="EUR",
                price_per_kwh_minor=30,
                price_per_minute_minor=0,
                price_per_session_minor=0,
                session_fee_min_energy_wh=0,
                session_fee_min_duration_s=0,
                idle_grace_minutes=grace_min,
                idle_price_per_minute_minor=price,
                idle_fee_cap_minor=cap,
            )
            .returning(TariffVersion.id)
        )
        db.add(
            Charger(
                charge_box_id=cb,
                tariff_id=tariff_id,
                allow_unauthenticated=True,
                connected=connected,
                last_seen_at=last_seen_at or stopped_at,
            )
        )
        await db.flush()
        db.add(
            Transaction(
                charge_box_id=cb,
                connector_id=1,
                id_tag="IDLE-T",
                workflow_id=workflow_id,
                meter_start_wh=0,
                meter_stop_wh=1000,
                started_at=stopped_at - timedelta(hours=1),
                stopped_at=stopped_at,
                stop_reason="Local",
            )
        )
        db.add(
            ChargingSession(
                workflow_id=workflow_id,
                state="closed",
                charge_box_id=cb,
                connector_id=1,
                tariff_version_id=version_id,
                currency="EUR",
            )
        )
    return cb, workflow_id


async def line_of(sf: SessionFactory, workflow_id: str) -> IdleFeeLine:
    async with sf() as db:
        line = await db.scalar(
            select(IdleFeeLine).where(IdleFeeLine.session_workflow_id == workflow_id)
        )
    assert line is not None
    return line


def status(cb: str, workflow_id: str, name: str, at: datetime, event_id: int) -> dict[str, object]:
    return {
        "event_id": event_id,
        "charge_box_id": cb,
        "connector_id": 1,
        "status": name,
        "error_code": "NoError",
        "at": at.isoformat(),
        "session_workflow_id": workflow_id,
        "stopped_at": None,
    }


async def run(
    env: WorkflowEnvironment,
    task_queue: str,
    cb: str,
    workflow_id: str,
    events: list[dict[str, object]],
    *,
    watch_s: int = 3600,
    record: bool = False,
) -> IdleFeeOutcome:
    handle = await env.client.start_workflow(
        IdleFeeWorkflow.run,
        IdleFeeInput(
            session_workflow_id=workflow_id, charge_box_id=cb, connector_id=1, watch_s=watch_s
        ),
        id=idle_fee_workflow_id(workflow_id),
        task_queue=task_queue,
        start_signal=SIGNAL_IDLE_STATUS,
        start_signal_args=[events[0]],
    )
    for event in events[1:]:
        await handle.signal(SIGNAL_IDLE_STATUS, event)
    outcome = await handle.result()
    if record and os.environ.get("POLARIS_RECORD_HISTORIES"):
        HISTORY.write_text((await handle.fetch_history()).to_json())
    return outcome


async def test_no_free_status_ends_at_the_watch(
    time_skipping_env: WorkflowEnvironment,
    idle_worker: Worker,
    task_queue: str,
    session_factory: SessionFactory,
) -> None:
    stopped = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    cb, wf = await stopped_session(session_factory, stopped_at=stopped, grace_min=10, price=10)
    # Finishing, then SuspendedEV: still plugged in; nothing ever says the connector is free.
    events = [
        status(cb, wf, "Finishing", stopped, 1),
        status(cb, wf, "SuspendedEV", stopped + timedelta(seconds=30), 2),
        status(cb, wf, "SuspendedEV", stopped + timedelta(seconds=30), 2),  # a redelivery
    ]
    outcome = await run(time_skipping_env, task_queue, cb, wf, events, watch_s=3600, record=True)
    # One hour watched, ten minutes free: 50 minutes at 10.
    assert (outcome.status, outcome.end_reason, outcome.idle_s) == (
        "recorded",
        "watch_expired",
        3600,
    )
    assert outcome.amount_minor == 500
    line = await line_of(session_factory, wf)
    assert (line.amount_minor, line.billed_s, line.capped, line.sent_at) == (500, 3000, False, None)
    assert line.line_id == f"{wf}:idle-fee"


async def test_the_cap_ends_the_wait(
    time_skipping_env: WorkflowEnvironment,
    idle_worker: Worker,
    task_queue: str,
    session_factory: SessionFactory,
) -> None:
    stopped = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    cb, wf = await stopped_session(session_factory, stopped_at=stopped, price=10, cap=200)
    events = [status(cb, wf, "Finishing", stopped, 1)]
    outcome = await run(time_skipping_env, task_queue, cb, wf, events, watch_s=24 * 3600)
    assert (outcome.end_reason, outcome.amount_minor) == ("cap_reached", 200)
    line = await line_of(session_factory, wf)
    # 19.95 minutes at 10 per minute round to 200: the cap is billed from then on.
    assert line.idle_s == 1197
    assert line.ended_at == stopped + timedelta(seconds=1197)


async def test_an_offline_charger_is_billed_until_it_was_last_seen(
    time_skipping_env: WorkflowEnvironment,
    idle_worker: Worker,
    task_queue: str,
    session_factory: SessionFactory,
) -> None:
    stopped = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    cb, wf = await stopped_session(
        session_factory,
        stopped_at=stopped,
        price=6,
        connected=False,
        last_seen_at=stopped + timedelta(minutes=20),
    )
    events = [status(cb, wf, "SuspendedEV", stopped, 1)]
    outcome = await run(time_skipping_env, task_queue, cb, wf, events, watch_s=7200)
    assert (outcome.end_reason, outcome.idle_s, outcome.amount_minor) == (
        "charger_offline",
        1200,
        120,
    )


async def test_freed_within_the_grace_costs_nothing(
    time_skipping_env: WorkflowEnvironment,
    idle_worker: Worker,
    task_queue: str,
    session_factory: SessionFactory,
) -> None:
    stopped = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    cb, wf = await stopped_session(session_factory, stopped_at=stopped, grace_min=15, price=50)
    events = [
        status(cb, wf, "Finishing", stopped, 1),
        status(cb, wf, "Available", stopped + timedelta(minutes=14), 2),
    ]
    outcome = await run(time_skipping_env, task_queue, cb, wf, events)
    assert (outcome.status, outcome.end_reason, outcome.idle_s, outcome.amount_minor) == (
        "recorded",
        "available",
        14 * 60,
        0,
    )
