"""invoice.created → session_invoices → the session: signal ``invoice_linked`` and read model."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from activities.lago_invoices import invoice_key
from activities.lago_webhooks import reset_breaker, start_webhook_workflow, store_webhook_event
from config.settings import Settings
from db.engine import SessionFactory
from tests.helpers import eventually
from tests.workflows.conftest import Seed, at
from tests.workflows.test_charging_session import Handle, read_model, started, tap, tx_id
from worker import build_worker
from workflows.charging_session import ChargingSessionWorkflow
from workflows.lago_webhook import LagoWebhookResult, lago_webhook_workflow_id
from workflows.messages import TransactionStopped

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def worker(
    temporal_client: Client,
    lago_settings: Settings,
    session_factory: SessionFactory,
    task_queue: str,
) -> AsyncIterator[Worker]:
    await reset_breaker(session_factory, by="tests")
    async with build_worker(
        temporal_client, lago_settings, session_factory, task_queue=task_queue
    ) as running:
        yield running


def invoice_created(workflow_id: str, lago_id: str) -> dict[str, Any]:
    return {
        "webhook_type": "invoice.created",
        "object_type": "invoice",
        "invoice": {
            "lago_id": lago_id,
            "number": f"POL-{lago_id[:6]}",
            "invoice_type": "one_off",
            "total_amount_cents": 481,
            "currency": "EUR",
            "customer": {"external_id": "CUST0001"},
            "fees": [{"description": f"EV charging [polaris:{invoice_key(workflow_id)}]"}],
        },
    }


async def deliver(
    client: Client, factory: SessionFactory, task_queue: str, workflow_id: str
) -> tuple[str, LagoWebhookResult]:
    lago_id = str(uuid.uuid4())
    payload = invoice_created(workflow_id, lago_id)
    stored = await store_webhook_event(
        factory,
        unique_key=str(uuid.uuid4()),
        webhook_type="invoice.created",
        payload=payload,
        body_sha256=hashlib.sha256(json.dumps(payload).encode()).hexdigest(),
    )
    await start_webhook_workflow(client, stored.id, task_queue=task_queue)
    handle = client.get_workflow_handle(
        lago_webhook_workflow_id(stored.id), result_type=LagoWebhookResult
    )
    return lago_id, await handle.result()


async def _invoice_is(handle: Handle, lago_id: str) -> bool:
    status = await handle.query(ChargingSessionWorkflow.status)
    assert status.lago_invoice_id == lago_id, status
    return True


async def test_running_session_records_the_invoice(
    temporal_client: Client,
    worker: Worker,
    task_queue: str,
    session_factory: SessionFactory,
) -> None:
    seed = Seed(session_factory)
    cb = await seed.charger()
    tag = await seed.card("inv")
    _, handle = await tap(temporal_client, task_queue, cb, tag)
    tx = tx_id()
    await handle.signal(ChargingSessionWorkflow.transaction_started, started(1, tx, cb, tag, 0))

    lago_id, result = await deliver(temporal_client, session_factory, task_queue, handle.id)
    assert (result.status, result.linked_sessions) == ("processed", [handle.id])
    await eventually(lambda: _invoice_is(handle, lago_id))
    row = await read_model(session_factory, handle.id)
    assert row is not None and row.lago_invoice_id == lago_id

    await handle.signal(
        ChargingSessionWorkflow.transaction_stopped,
        TransactionStopped(event_id=2, transaction_id=tx, meter_stop_wh=1000, stopped_at=at(5)),
    )
    final = await handle.result()
    assert (final.state, final.lago_invoice_id) == ("closed", lago_id)
    assert final.invoice_number == f"POL-{lago_id[:6]}"
    row = await read_model(session_factory, handle.id)
    assert row is not None and (row.state, row.lago_invoice_id) == ("closed", lago_id)


async def test_closed_session_gets_the_link_in_its_read_model(
    temporal_client: Client,
    worker: Worker,
    task_queue: str,
    session_factory: SessionFactory,
) -> None:
    seed = Seed(session_factory)
    cb = await seed.charger()
    tag = await seed.card("done")
    _, handle = await tap(temporal_client, task_queue, cb, tag)
    tx = tx_id()
    await handle.signal(ChargingSessionWorkflow.transaction_started, started(1, tx, cb, tag, 0))
    await handle.signal(
        ChargingSessionWorkflow.transaction_stopped,
        TransactionStopped(event_id=2, transaction_id=tx, meter_stop_wh=500, stopped_at=at(2)),
    )
    assert (await handle.result()).state == "closed"

    lago_id, result = await deliver(temporal_client, session_factory, task_queue, handle.id)
    assert (result.status, result.error) == ("processed", None)
    row = await read_model(session_factory, handle.id)
    assert row is not None and (row.state, row.lago_invoice_id) == ("closed", lago_id)
