"""Retention: the schedule made at worker start, triggered by hand, deletes old rows of every
table in batches and keeps what still matters (real PostgreSQL rows, real Temporal schedule)."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from temporalio.client import Client, WorkflowHistory
from temporalio.worker import Replayer

from config.settings import Settings
from config.temporal import DATA_CONVERTER
from db.billing_models import LagoWebhookEvent, SessionInvoice
from db.engine import SessionFactory
from db.models import (
    AuditLog,
    BillingEvent,
    ChargingSession,
    GatewayOutbox,
    MeterSample,
    PlatformEvent,
    Transaction,
)
from services.retention import ensure_retention_schedule
from tests.helpers import eventually
from tests.workflows.conftest import Seed
from worker import build_worker
from workflows.retention import RetentionWorkflow

pytestmark = pytest.mark.timeout(180)

# Recorded by the schedule test below with POLARIS_RECORD_HISTORIES=1 (only on purpose).
HISTORY = Path(__file__).resolve().parent.parent / "histories" / "retention_v1.json"

OLD = datetime.now(UTC) - timedelta(days=10)
NEW = datetime.now(UTC)


async def _session(
    factory: SessionFactory, cb: str, state: str, *, unsent: bool = False, invoiced: bool = False
) -> int:
    """A session with a transaction and one old meter sample; returns the sample's id."""
    workflow_id = f"session:retention:{uuid.uuid4().hex[:10]}"
    tx = int(uuid.uuid4().int % 2_000_000_000)
    async with factory() as db, db.begin():
        db.add(ChargingSession(workflow_id=workflow_id, state=state, charge_box_id=cb))
        db.add(
            Transaction(
                id=tx,
                charge_box_id=cb,
                connector_id=1,
                id_tag="RET",
                workflow_id=workflow_id,
                meter_start_wh=tx,  # unique per session (the start identity)
                started_at=OLD,
            )
        )
        db.add(
            BillingEvent(
                transaction_id=f"{workflow_id}:1",
                workflow_id=workflow_id,
                sequence=1,
                kind="final",
                energy_wh=1000,
                amount_minor=30,
                currency="EUR",
                occurred_at=OLD,
                sent_at=None if unsent else OLD,
            )
        )
        if invoiced:
            db.add(
                SessionInvoice(workflow_id=workflow_id, lago_invoice_id="inv-1", source="session")
            )
        sample = MeterSample(
            transaction_id=tx,
            charge_box_id=cb,
            connector_id=1,
            sampled_at=OLD,
            measurand="Energy.Active.Import.Register",
            raw_value="1000",
            received_at=OLD,
        )
        db.add(sample)
        await db.flush()
        return sample.id


async def _ids(factory: SessionFactory, model: type, ids: list[int]) -> set[int]:
    async with factory() as db:
        return set(await db.scalars(select(model.id).where(model.id.in_(ids))))  # type: ignore[attr-defined]


async def test_a_triggered_schedule_prunes_old_rows_and_keeps_the_rest(
    temporal_client: Client,
    base_settings: Settings,
    session_factory: SessionFactory,
    task_queue: str,
) -> None:
    seed = Seed(session_factory)
    cb = await seed.charger()
    async with session_factory() as db, db.begin():
        outbox = [
            GatewayOutbox(workflow_id="w", kind="k", payload={}, created_at=OLD, delivered_at=OLD),
            GatewayOutbox(workflow_id="w", kind="k", payload={}, created_at=OLD, delivered_at=None),
            GatewayOutbox(workflow_id="w", kind="k", payload={}, created_at=NEW, delivered_at=NEW),
        ]
        audit = [
            AuditLog(actor="t", action="retention.test", at=OLD, details={}),
            AuditLog(actor="t", action="retention.test", at=NEW, details={}),
        ]
        events = [
            PlatformEvent(type="retention.test", occurred_at=OLD, payload={}),
            PlatformEvent(type="retention.test", occurred_at=NEW, payload={}),
        ]
        hooks = [
            LagoWebhookEvent(
                unique_key=f"ret-{uuid.uuid4().hex}",
                webhook_type="t",
                payload={},
                status=status,
                created_at=created,
            )
            for status, created in (("processed", OLD), ("pending", OLD), ("processed", NEW))
        ]
        db.add_all([*outbox, *audit, *events, *hooks])
        await db.flush()
        # A replay still points at this old processed event: it stays until the replay goes.
        referenced = LagoWebhookEvent(
            unique_key=f"ret-{uuid.uuid4().hex}",
            webhook_type="t",
            payload={},
            status="processed",
            created_at=OLD,
        )
        db.add(referenced)
        await db.flush()
        db.add(
            LagoWebhookEvent(
                unique_key=f"ret-{uuid.uuid4().hex}",
                webhook_type="t",
                payload={},
                status="pending",
                created_at=NEW,
                replay_of=referenced.id,
            )
        )
    billed = await _session(session_factory, cb, "closed")
    invoiced = await _session(session_factory, cb, "closed", unsent=True, invoiced=True)
    unbilled = await _session(session_factory, cb, "closed", unsent=True)
    running = await _session(session_factory, cb, "charging")

    settings = base_settings.model_copy(
        update={
            "retention_outbox_days": 1,
            "retention_meter_samples_days": 1,
            "retention_audit_days": 1,
            "retention_webhook_events_days": 1,
            "retention_platform_events_days": 1,
            "retention_batch_size": 1,  # every row its own batch: the loop is exercised
            "retention_cron": "0 0 1 1 *",  # far away: only the manual trigger runs it
        }
    )
    schedule_id = f"retention-test-{uuid.uuid4().hex[:8]}"
    # Twice: the second start finds the schedule and updates it (idempotent).
    await ensure_retention_schedule(
        temporal_client, settings, task_queue=task_queue, schedule_id=schedule_id
    )
    await ensure_retention_schedule(
        temporal_client, settings, task_queue=task_queue, schedule_id=schedule_id
    )
    handle = temporal_client.get_schedule_handle(schedule_id)
    try:
        async with build_worker(temporal_client, settings, session_factory, task_queue=task_queue):
            await handle.trigger()

            async def outbox_pruned() -> bool:
                return await _ids(session_factory, GatewayOutbox, [o.id for o in outbox]) == {
                    outbox[1].id,
                    outbox[2].id,
                }

            await eventually(outbox_pruned, timeout=60)

            async def done() -> bool:
                described = await handle.describe()
                recent = described.info.recent_actions
                if not recent:
                    return False
                run = temporal_client.get_workflow_handle(
                    recent[-1].action.workflow_id,
                    run_id=recent[-1].action.first_execution_run_id,
                )
                await run.result()
                if os.environ.get("POLARIS_RECORD_HISTORIES"):
                    HISTORY.write_text((await run.fetch_history()).to_json())
                return True

            await eventually(done, timeout=60)
    finally:
        await handle.delete()

    assert await _ids(session_factory, AuditLog, [a.id for a in audit]) == {audit[1].id}
    assert await _ids(session_factory, PlatformEvent, [e.id for e in events]) == {events[1].id}
    kept_hooks = await _ids(session_factory, LagoWebhookEvent, [h.id for h in hooks])
    assert kept_hooks == {hooks[1].id, hooks[2].id}
    assert await _ids(session_factory, LagoWebhookEvent, [referenced.id]) == {referenced.id}
    # Meter samples go only once billing is complete for their session.
    samples = await _ids(session_factory, MeterSample, [billed, invoiced, unbilled, running])
    assert samples == {unbilled, running}


def test_zero_keeps_a_table_forever() -> None:
    days = Settings(env="test", retention_audit_days=0).retention_days()
    assert days["audit_log"] == 0
    assert set(days) == {
        "gateway_outbox",
        "meter_samples",
        "audit_log",
        "lago_webhook_events",
        "platform_events",
    }


async def test_replay_retention_v1() -> None:
    history = WorkflowHistory.from_json("retention-v1", HISTORY.read_text())
    replayer = Replayer(workflows=[RetentionWorkflow], data_converter=DATA_CONVERTER)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None
