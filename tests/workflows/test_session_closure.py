"""A forgotten transaction closed by the gateway's signal, then a late stop: the workflow bills
the last good register, records the closure, and compensates exactly.

With ``POLARIS_RECORD_HISTORIES=1`` it also records ``tests/histories/charging_session_v3.json``
(the ``session-closure-v1`` patch), replayed by ``tests/workflows/test_replay.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

from temporalio.client import Client
from temporalio.worker import Worker

from db.engine import SessionFactory
from domain.pricing import price_session
from tests.workflows.conftest import Seed, at
from tests.workflows.test_charging_session import TARIFF, billing_rows, started, tap, tx_id
from workflows.charging_session import ChargingSessionWorkflow
from workflows.messages import MeterProgress, TransactionClosed, TransactionStopped

V4_HISTORY = Path(__file__).resolve().parent.parent / "histories" / "charging_session_v4.json"


async def test_closed_by_the_gateway_then_a_late_stop_compensates(
    temporal_client: Client,
    session_worker: Worker,
    task_queue: str,
    seed: Seed,
    session_factory: SessionFactory,
) -> None:
    cb = await seed.charger()
    tag = await seed.card("forgot")
    result, handle = await tap(temporal_client, task_queue, cb, tag)
    assert result.status == "Accepted"
    tx = tx_id()
    await handle.signal(ChargingSessionWorkflow.transaction_started, started(1, tx, cb, tag, 1000))
    await handle.signal(
        ChargingSessionWorkflow.meter_progress,
        MeterProgress(event_id=2, transaction_id=tx, energy_register_wh=3000, sampled_at=at(10)),
    )
    await handle.signal(
        ChargingSessionWorkflow.transaction_closed,
        TransactionClosed(event_id=3, transaction_id=tx, reason="charger_rebooted", at=at(12)),
    )
    await handle.signal(
        ChargingSessionWorkflow.transaction_stopped,
        TransactionStopped(
            event_id=4, transaction_id=tx, meter_stop_wh=3500, stopped_at=at(20), reason="PowerLoss"
        ),
    )
    final = await handle.result()
    assert final.state == "closed"
    assert "closed_charger_rebooted" in final.flags
    rows = await billing_rows(session_factory, handle.id)
    assert [(r.kind, r.energy_wh) for r in rows] == [("final", 2000), ("compensation", 500)]
    truth = price_session(TARIFF, energy_wh=2500, duration_s=20 * 60).total_minor
    assert sum(r.amount_minor for r in rows) == truth
    if os.environ.get("POLARIS_RECORD_HISTORIES"):
        V4_HISTORY.write_text((await handle.fetch_history()).to_json())
