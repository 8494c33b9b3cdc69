"""A value PostgreSQL refuses (a ``DataError``) is not retried forever: the session is flagged
``data_error``, bills nothing for it, and still reaches its final state.

The gateway refuses such values at the edge (``tests/gateway/test_poison.py``); this drives the
real worker past that edge on purpose, with signals, as a session recorded before the edge checks
(or a future bug) would. Regenerate ``tests/histories/charging_session_v3.json`` (only on purpose)
with ``POLARIS_RECORD_HISTORIES=1 pytest tests/workflows/test_data_error.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

from temporalio.client import Client
from temporalio.worker import Worker

from db.engine import SessionFactory
from tests.helpers import eventually
from tests.workflows.conftest import Seed, at
from tests.workflows.test_charging_session import billing_rows, read_model, started, tap, tx_id
from workflows.charging_session import ChargingSessionWorkflow
from workflows.messages import TransactionStopped
from workflows.session_billing import FLAG_DATA_ERROR

V3_HISTORY = Path(__file__).resolve().parent.parent / "histories" / "charging_session_v3.json"


async def test_data_error_flags_the_session_and_it_still_closes(
    temporal_client: Client,
    session_worker: Worker,
    task_queue: str,
    seed: Seed,
    session_factory: SessionFactory,
) -> None:
    # 9·10^18 Wh fits a BIGINT; at 10 000 minor units per kWh its price (9·10^19) does not.
    cb = await seed.charger(tariff=(10_000, 0, 0))
    tag = await seed.card("poison")
    result, handle = await tap(temporal_client, task_queue, cb, tag)
    assert result.status == "Accepted"
    tx = tx_id()
    await handle.signal(ChargingSessionWorkflow.transaction_started, started(1, tx, cb, tag, 0))
    await handle.signal(
        ChargingSessionWorkflow.transaction_stopped,
        TransactionStopped(
            event_id=2, transaction_id=tx, meter_stop_wh=9 * 10**18, stopped_at=at(30)
        ),
    )

    final = await handle.result()  # not retrying forever: the workflow completes
    assert final.state == "closed"
    assert FLAG_DATA_ERROR in final.flags
    assert final.cost_minor == 0 and final.billing_event_ids == []
    assert await billing_rows(session_factory, handle.id) == []

    async def flagged_row() -> bool:
        row = await read_model(session_factory, handle.id)
        return row is not None and row.state == "closed" and FLAG_DATA_ERROR in row.flags

    await eventually(flagged_row, message="read model closed and flagged")
    if os.environ.get("POLARIS_RECORD_HISTORIES"):
        V3_HISTORY.write_text((await handle.fetch_history()).to_json())
