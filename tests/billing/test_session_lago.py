"""ChargingSessionWorkflow → Lago: periodic and final lines, Lago down, per-session invoices.

Real dev server, real PostgreSQL, the real worker (``build_worker``) and the Lago sandbox.
Regenerate ``tests/histories/charging_session_v2.json`` (only on purpose) with
``POLARIS_RECORD_HISTORIES=1 pytest tests/billing/test_session_lago.py -k periodic``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from temporalio.client import Client
from temporalio.worker import Worker

from activities.lago import LagoBilling
from config.settings import Settings
from db.engine import SessionFactory
from db.models import BillingEvent
from tests.billing.conftest import seed_driver
from tests.helpers import eventually
from tests.sandbox.conftest import RunningSandbox
from tests.workflows.conftest import FakeGateway, Seed, at
from tests.workflows.test_charging_session import Handle, billing_rows, started, tap, tx_id
from worker import build_worker
from workflows.charging_session import ChargingSessionWorkflow
from workflows.messages import MeterProgress, RemoteStopInput, TransactionStopped
from workflows.session_billing import FLAG_LAGO_UNSENT

V2_HISTORY = Path(__file__).resolve().parent.parent / "histories" / "charging_session_v2.json"

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def lago_worker(
    temporal_client: Client,
    lago_settings: Settings,
    session_factory: SessionFactory,
    task_queue: str,
) -> AsyncIterator[Worker]:
    worker = build_worker(temporal_client, lago_settings, session_factory, task_queue=task_queue)
    async with worker:
        yield worker


@pytest.fixture
def seed(session_factory: SessionFactory) -> Seed:
    return Seed(session_factory)


@pytest.fixture
async def fake_gateway(temporal_client: Client, seed: Seed) -> AsyncIterator[FakeGateway]:
    gateway = FakeGateway()
    async with Worker(
        temporal_client,
        task_queue=f"gateway-{seed.gateway_instance}",
        activities=[gateway.send_charger_command],
    ):
        yield gateway


def lago_transaction_ids(sandbox: RunningSandbox, subscription: str) -> set[str]:
    body = sandbox.api(
        "GET", "/events", params={"external_subscription_id": subscription, "per_page": 100}
    ).json()
    return {event["transaction_id"] for event in body["events"]}


async def rows_where(
    factory: SessionFactory, workflow_id: str, check: Any
) -> list[BillingEvent] | None:
    rows = await billing_rows(factory, workflow_id)
    return rows if check(rows) else None


async def progress(handle: Handle, event_id: int, tx: int, register_wh: int, minute: float) -> None:
    await handle.signal(
        ChargingSessionWorkflow.meter_progress,
        MeterProgress(
            event_id=event_id,
            transaction_id=tx,
            energy_register_wh=register_wh,
            sampled_at=at(minute),
        ),
    )


async def test_periodic_and_final_lines_reach_lago_once(
    temporal_client: Client,
    lago_worker: Worker,
    task_queue: str,
    seed: Seed,
    session_factory: SessionFactory,
    billing: LagoBilling,
    lago_sandbox: RunningSandbox,
) -> None:
    cb = await seed.charger()
    driver = await seed_driver(session_factory, billing)
    assert driver.subscription is not None
    _, handle = await tap(temporal_client, task_queue, cb, driver.id_tag, periodic_billing_s=1.0)
    tx = tx_id()
    await handle.signal(
        ChargingSessionWorkflow.transaction_started, started(1, tx, cb, driver.id_tag, 1000)
    )
    await progress(handle, 2, tx, 4000, 10)
    first = await eventually(
        lambda: rows_where(session_factory, handle.id, lambda r: len(r) == 1 and r[0].sent_at)
    )
    assert (first[0].kind, first[0].energy_wh) == ("periodic", 3000)
    await progress(handle, 3, tx, 6500, 20)
    await eventually(lambda: rows_where(session_factory, handle.id, lambda r: len(r) == 2))
    await handle.signal(
        ChargingSessionWorkflow.transaction_stopped,
        TransactionStopped(
            event_id=4, transaction_id=tx, meter_stop_wh=7345, stopped_at=at(25), reason="Local"
        ),
    )
    final = await handle.result()
    rows = await billing_rows(session_factory, handle.id)
    assert [(r.sequence, r.kind) for r in rows] == [(1, "periodic"), (2, "periodic"), (3, "final")]
    assert sum(r.energy_wh for r in rows) == 7345 - 1000 == final.energy_wh
    assert sum(r.amount_minor for r in rows) == final.cost_minor
    assert all(r.sent_at is not None for r in rows)
    assert lago_transaction_ids(lago_sandbox, driver.subscription) == {
        f"{handle.id}:{n}" for n in (1, 2, 3)
    }
    assert FLAG_LAGO_UNSENT not in final.flags
    if os.environ.get("POLARIS_RECORD_HISTORIES"):
        V2_HISTORY.write_text((await handle.fetch_history()).to_json())


async def test_lago_down_never_blocks_charging(
    temporal_client: Client,
    lago_worker: Worker,
    task_queue: str,
    seed: Seed,
    session_factory: SessionFactory,
    billing: LagoBilling,
    lago_sandbox: RunningSandbox,
    fake_gateway: FakeGateway,
) -> None:
    cb = await seed.charger()
    driver = await seed_driver(session_factory, billing)
    assert driver.subscription is not None
    assert lago_sandbox.admin("DELETE", "/faults").status_code == 204
    fault = {
        "mode": "status",
        "status": 503,
        "phase": "before",
        "path_prefix": "/api/v1/events",
        "method": "POST",
        "count": 10_000,
    }
    assert lago_sandbox.admin("POST", "/faults", json=fault).status_code == 201
    try:
        _, handle = await tap(
            temporal_client, task_queue, cb, driver.id_tag, periodic_billing_s=1.0
        )
        tx = tx_id()
        await handle.signal(
            ChargingSessionWorkflow.transaction_started, started(1, tx, cb, driver.id_tag, 0)
        )
        await progress(handle, 2, tx, 2000, 5)
        # The periodic line is recorded; its send is stuck retrying against a 503.
        await eventually(lambda: rows_where(session_factory, handle.id, lambda r: len(r) == 1))
        # An update and a signal are still handled while the send retries.
        answer = await handle.execute_update(
            ChargingSessionWorkflow.remote_stop, RemoteStopInput(requested_by="driver")
        )
        assert answer.accepted
        assert [c.action for c in fake_gateway.commands] == ["RemoteStopTransaction"]
        await handle.signal(
            ChargingSessionWorkflow.transaction_stopped,
            TransactionStopped(
                event_id=3, transaction_id=tx, meter_stop_wh=3000, stopped_at=at(9), reason="Remote"
            ),
        )
        closed = await eventually(lambda: _state(handle, "closed"))
        assert closed.energy_wh == 3000
        rows = await billing_rows(session_factory, handle.id)
        assert [(r.kind, r.sent_at) for r in rows] == [("periodic", None), ("final", None)]
    finally:
        assert lago_sandbox.admin("DELETE", "/faults").status_code == 204
    # Lago is back: the retries deliver everything, once, and only then does the session end.
    final = await handle.result()
    assert FLAG_LAGO_UNSENT not in final.flags
    rows = await billing_rows(session_factory, handle.id)
    assert all(r.sent_at is not None for r in rows)
    assert lago_transaction_ids(lago_sandbox, driver.subscription) == {
        f"{handle.id}:1",
        f"{handle.id}:2",
    }


async def _state(handle: Handle, state: str) -> Any:
    status = await handle.query(ChargingSessionWorkflow.status)
    assert status.state == state, status
    return status


async def test_per_session_mode_creates_one_invoice(
    temporal_client: Client,
    lago_worker: Worker,
    task_queue: str,
    seed: Seed,
    session_factory: SessionFactory,
    billing: LagoBilling,
    lago_sandbox: RunningSandbox,
) -> None:
    cb = await seed.charger()
    driver = await seed_driver(session_factory, billing, mode="per_session")
    _, handle = await tap(temporal_client, task_queue, cb, driver.id_tag)
    tx = tx_id()
    await handle.signal(
        ChargingSessionWorkflow.transaction_started, started(1, tx, cb, driver.id_tag, 0)
    )
    await handle.signal(
        ChargingSessionWorkflow.transaction_stopped,
        TransactionStopped(event_id=2, transaction_id=tx, meter_stop_wh=5000, stopped_at=at(30)),
    )
    final = await handle.result()
    assert final.lago_invoice_id is not None
    invoice = lago_sandbox.api("GET", f"/invoices/{final.lago_invoice_id}").json()["invoice"]
    assert invoice["total_amount_cents"] == final.cost_minor
    # Per-session rows are billed by the invoice, not as usage: they stay unsent as events.
    rows = await billing_rows(session_factory, handle.id)
    assert [r.sent_at for r in rows] == [None]


async def test_customer_without_subscription_is_flagged_not_blocked(
    temporal_client: Client,
    lago_worker: Worker,
    task_queue: str,
    seed: Seed,
    session_factory: SessionFactory,
) -> None:
    cb = await seed.charger()
    tag = await seed.card("nosub")  # a Lago customer id, no subscription in Lago
    _, handle = await tap(temporal_client, task_queue, cb, tag)
    tx = tx_id()
    await handle.signal(ChargingSessionWorkflow.transaction_started, started(1, tx, cb, tag, 0))
    await handle.signal(
        ChargingSessionWorkflow.transaction_stopped,
        TransactionStopped(event_id=2, transaction_id=tx, meter_stop_wh=100, stopped_at=at(1)),
    )
    final = await handle.result()
    assert final.state == "closed"
    assert FLAG_LAGO_UNSENT in final.flags
    async with session_factory() as db:
        unsent = await db.scalars(
            select(BillingEvent.transaction_id).where(
                BillingEvent.workflow_id == handle.id, BillingEvent.sent_at.is_(None)
            )
        )
        assert list(unsent) == [f"{handle.id}:1"]
