"""ChargingSessionWorkflow against the real dev server and real PostgreSQL.

With ``POLARIS_RECORD_HISTORIES=1`` the tap-to-billed test also records
``tests/histories/charging_session_v9.json``: the card's pre-authorization, the tariff, the
billing line and the read-model writes as local activities (patches
``session-db-activities-local-v1`` and ``session-read-model-local-v1``), each read-model write's
result naming the state it wrote (what the operator's timeline reads). ``charging_session_v7`` and
``v8``, recorded by the same test before each of those changes, are frozen.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from temporalio.client import Client, WithStartWorkflowOperation, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.worker import Worker

from db.engine import SessionFactory
from db.models import BillingEvent, ChargingSession
from domain.pricing import TariffTerms, price_session
from tests.helpers import eventually
from tests.workflows.conftest import FakeGateway, Seed, at
from workflows.charging_session import ChargingSessionWorkflow
from workflows.messages import (
    ConnectorStatus,
    MeterProgress,
    PreAuthorizeInput,
    PreAuthorizeResult,
    RemoteStopInput,
    SessionInput,
    SessionStatus,
    TransactionStarted,
    TransactionStopped,
    tap_workflow_id,
)

TARIFF = TariffTerms(
    currency="EUR", price_per_kwh_minor=30, price_per_minute_minor=2, price_per_session_minor=50
)

Handle = WorkflowHandle[ChargingSessionWorkflow, SessionStatus]

V9_HISTORY = Path(__file__).resolve().parent.parent / "histories" / "charging_session_v9.json"


async def tap(
    client: Client, task_queue: str, charge_box_id: str, id_tag: str, **options: object
) -> tuple[PreAuthorizeResult, Handle]:
    """What the gateway does on an accepted Authorize: update-with-start ``pre_authorize``."""
    workflow_id = tap_workflow_id(charge_box_id, datetime.now(UTC), uuid.uuid4().hex[:8])
    start = WithStartWorkflowOperation(
        ChargingSessionWorkflow.run,
        SessionInput(charge_box_id=charge_box_id, id_tag=id_tag, **options),  # type: ignore[arg-type]
        id=workflow_id,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        task_queue=task_queue,
    )
    result = await client.execute_update_with_start_workflow(
        ChargingSessionWorkflow.pre_authorize,
        PreAuthorizeInput(id_tag=id_tag, charge_box_id=charge_box_id, connector_id=1),
        start_workflow_operation=start,
    )
    return result, await start.workflow_handle()


def started(
    event_id: int, tx: int, charge_box_id: str, id_tag: str, start_wh: int
) -> TransactionStarted:
    return TransactionStarted(
        event_id=event_id,
        transaction_id=tx,
        charge_box_id=charge_box_id,
        connector_id=1,
        id_tag=id_tag,
        meter_start_wh=start_wh,
        started_at=at(0),
    )


async def billing_rows(factory: SessionFactory, workflow_id: str) -> list[BillingEvent]:
    async with factory() as db:
        rows = await db.execute(
            select(BillingEvent)
            .where(BillingEvent.workflow_id == workflow_id)
            .order_by(BillingEvent.sequence)
        )
        return list(rows.scalars())


async def read_model(factory: SessionFactory, workflow_id: str) -> ChargingSession | None:
    async with factory() as db:
        return await db.get(ChargingSession, workflow_id)


def tx_id() -> int:
    return uuid.uuid4().int % 1_000_000_000


async def test_tap_to_billed_once(
    temporal_client: Client,
    session_worker: Worker,
    task_queue: str,
    seed: Seed,
    session_factory: SessionFactory,
) -> None:
    cb = await seed.charger()
    tag = await seed.card("happy")
    result, handle = await tap(temporal_client, task_queue, cb, tag)
    assert result.status == "Accepted"
    # A repeated tap (update retried by the gateway) gets the same answer.
    again = await handle.execute_update(
        ChargingSessionWorkflow.pre_authorize, PreAuthorizeInput(id_tag=tag, charge_box_id=cb)
    )
    assert again == result

    tx = tx_id()
    await handle.signal(ChargingSessionWorkflow.transaction_started, started(1, tx, cb, tag, 1000))
    # Redelivered signal (same event id, as the outbox relay may do): ignored.
    await handle.signal(ChargingSessionWorkflow.transaction_started, started(1, tx + 1, cb, tag, 9))
    await handle.signal(
        ChargingSessionWorkflow.meter_progress,
        MeterProgress(event_id=2, transaction_id=tx, energy_register_wh=5000, sampled_at=at(10)),
    )
    await handle.signal(
        ChargingSessionWorkflow.connector_status,
        ConnectorStatus(event_id=3, connector_id=1, status="SuspendedEV", at=at(11)),
    )
    status = await eventually(lambda: _state_is(handle, "suspended"))
    assert status.last_register_wh == 5000
    await handle.signal(
        ChargingSessionWorkflow.connector_status,
        ConnectorStatus(event_id=4, connector_id=1, status="Charging", at=at(12)),
    )
    stop = TransactionStopped(
        event_id=5, transaction_id=tx, meter_stop_wh=13_345, stopped_at=at(30.5), reason="Local"
    )
    await handle.signal(ChargingSessionWorkflow.transaction_stopped, stop)
    await handle.signal(ChargingSessionWorkflow.transaction_stopped, stop)  # duplicate

    final = await handle.result()
    expected = price_session(TARIFF, energy_wh=12_345, duration_s=1830)
    assert final.state == "closed"
    assert final.energy_wh == 12_345
    assert final.cost_minor == expected.total_minor == 481
    assert final.billing_event_ids == [f"{handle.id}:1"]
    rows = await billing_rows(session_factory, handle.id)
    assert [(r.transaction_id, r.kind, r.energy_wh, r.amount_minor, r.currency) for r in rows] == [
        (f"{handle.id}:1", "final", 12_345, 481, "EUR")
    ]
    assert rows[0].lago_customer_external_id == f"cust-{tag}"
    row = await read_model(session_factory, handle.id)
    assert row is not None
    assert (row.state, row.energy_wh, row.cost_minor, row.transaction_id) == (
        "closed",
        12_345,
        481,
        tx,
    )
    if os.environ.get("POLARIS_RECORD_HISTORIES"):
        V9_HISTORY.write_text((await handle.fetch_history()).to_json())


async def _state_is(handle: Handle, state: str) -> SessionStatus | None:
    status = await handle.query(ChargingSessionWorkflow.status)
    assert status.state == state, status
    return status


@pytest.mark.parametrize(
    ("kind", "status", "reason"),
    [
        ("unknown", "Invalid", "unknown_card"),
        ("blocked", "Blocked", "card_blocked"),
        ("expired", "Expired", "card_expired"),
        ("parent_blocked", "Blocked", "parent_blocked"),
        ("unmapped", "Invalid", "no_active_mapping"),
    ],
)
async def test_bad_cards_are_rejected(
    temporal_client: Client,
    session_worker: Worker,
    task_queue: str,
    seed: Seed,
    kind: str,
    status: str,
    reason: str,
) -> None:
    cb = await seed.charger()
    if kind == "unknown":
        tag = seed.tag("nobody")
    elif kind == "blocked":
        tag = await seed.card("blk", blocked=True)
    elif kind == "expired":
        tag = await seed.card("exp", expires_at=datetime(2020, 1, 1, tzinfo=UTC))
    elif kind == "parent_blocked":
        parent = await seed.card("par", blocked=True, mapped=False)
        tag = await seed.card("kid", parent=parent)
    else:
        tag = await seed.card("lone", mapped=False)
    result, handle = await tap(temporal_client, task_queue, cb, tag)
    assert (result.status, result.reason) == (status, reason)
    final = await handle.result()
    assert final.state == "rejected"
    assert final.end_reason == reason


async def test_concurrent_session_limit(
    temporal_client: Client,
    session_worker: Worker,
    task_queue: str,
    seed: Seed,
) -> None:
    cb1 = await seed.charger()
    cb2 = await seed.charger(charge_box_id=f"{seed.charge_box_id}-2")
    tag = await seed.card("conc")
    first, handle1 = await tap(temporal_client, task_queue, cb1, tag)
    assert first.status == "Accepted"
    await eventually(lambda: _state_is(handle1, "pre_authorized"))
    second, handle2 = await tap(temporal_client, task_queue, cb2, tag)
    assert (second.status, second.reason) == ("ConcurrentTx", "concurrent_session_limit")
    assert (await handle2.result()).state == "rejected"
    await handle1.terminate("test over")


async def test_start_timeout_expires(
    temporal_client: Client,
    session_worker: Worker,
    task_queue: str,
    seed: Seed,
    session_factory: SessionFactory,
) -> None:
    cb = await seed.charger()
    tag = await seed.card("late")
    result, handle = await tap(temporal_client, task_queue, cb, tag, start_timeout_s=1.0)
    assert result.status == "Accepted"
    final = await handle.result()
    assert (final.state, final.end_reason) == ("expired", "start_timeout")
    row = await read_model(session_factory, handle.id)
    assert row is not None and row.state == "expired"
    assert await billing_rows(session_factory, handle.id) == []


async def test_remote_start_and_remote_stop(
    temporal_client: Client,
    session_worker: Worker,
    task_queue: str,
    seed: Seed,
    fake_gateway: FakeGateway,
    session_factory: SessionFactory,
) -> None:
    cb = await seed.charger()
    tag = await seed.card("remote")
    handle: Handle = await temporal_client.start_workflow(
        ChargingSessionWorkflow.run,
        SessionInput(charge_box_id=cb, id_tag=tag, connector_id=1, origin="remote"),
        id=f"session:{cb}:remote:{uuid.uuid4().hex[:8]}",
        task_queue=task_queue,
    )
    await eventually(lambda: len(fake_gateway.commands) == 1)
    command = fake_gateway.commands[0]
    assert (command.charge_box_id, command.action, command.payload) == (
        cb,
        "RemoteStartTransaction",
        {"idTag": tag, "connectorId": 1},
    )
    # The intent is recorded in the read model for the gateway to match the start against.
    row = await read_model(session_factory, handle.id)
    assert row is not None and (row.state, row.id_tag, row.charge_box_id) == (
        "pre_authorized",
        tag,
        cb,
    )
    tx = tx_id()
    await handle.signal(ChargingSessionWorkflow.transaction_started, started(1, tx, cb, tag, 0))
    await eventually(lambda: _state_is(handle, "charging"))
    answer = await handle.execute_update(
        ChargingSessionWorkflow.remote_stop, RemoteStopInput(requested_by="driver")
    )
    assert answer.accepted
    assert fake_gateway.commands[1].action == "RemoteStopTransaction"
    assert fake_gateway.commands[1].payload == {"transactionId": tx}
    again = await handle.execute_update(
        ChargingSessionWorkflow.remote_stop, RemoteStopInput(requested_by="driver")
    )
    assert (again.accepted, again.message) == (True, "already stopping")
    assert len(fake_gateway.commands) == 2
    await handle.signal(
        ChargingSessionWorkflow.transaction_stopped,
        TransactionStopped(
            event_id=2, transaction_id=tx, meter_stop_wh=2000, stopped_at=at(10), reason="Remote"
        ),
    )
    final = await handle.result()
    assert (final.state, final.energy_wh, final.end_reason) == ("closed", 2000, "Remote")
    assert final.cost_minor == price_session(TARIFF, energy_wh=2000, duration_s=600).total_minor


async def test_remote_start_refused_by_charger(
    temporal_client: Client,
    session_worker: Worker,
    task_queue: str,
    seed: Seed,
    fake_gateway: FakeGateway,
) -> None:
    fake_gateway.answer = {"status": "Rejected"}
    cb = await seed.charger()
    tag = await seed.card("refused")
    final = await temporal_client.execute_workflow(
        ChargingSessionWorkflow.run,
        SessionInput(charge_box_id=cb, id_tag=tag, connector_id=1, origin="remote"),
        id=f"session:{cb}:remote:{uuid.uuid4().hex[:8]}",
        task_queue=task_queue,
    )
    assert (final.state, final.end_reason) == ("rejected", "remote_start_failed: Rejected")


async def test_watchdog_abandons_then_late_stop_compensates(
    temporal_client: Client,
    session_worker: Worker,
    task_queue: str,
    seed: Seed,
    session_factory: SessionFactory,
) -> None:
    cb = await seed.charger(connected=False, last_seen_at=datetime(2020, 1, 1, tzinfo=UTC))
    tag = await seed.card("zombie")
    _, handle = await tap(
        temporal_client, task_queue, cb, tag, watchdog_silence_s=1.0, late_stop_window_s=120.0
    )
    tx = tx_id()
    await handle.signal(ChargingSessionWorkflow.transaction_started, started(1, tx, cb, tag, 1000))
    await handle.signal(
        ChargingSessionWorkflow.meter_progress,
        MeterProgress(event_id=2, transaction_id=tx, energy_register_wh=4000, sampled_at=at(20)),
    )
    abandoned = await eventually(lambda: _state_is(handle, "abandoned"), timeout=30)
    assert abandoned.end_reason == "abandoned"
    first = await eventually(lambda: _rows(session_factory, handle.id, 1))
    assert (first[0].kind, first[0].energy_wh) == ("final", 3000)
    first_price = price_session(TARIFF, energy_wh=3000, duration_s=20 * 60).total_minor
    assert first[0].amount_minor == first_price

    # The charger comes back and sends the StopTransaction it kept through the outage.
    await handle.signal(
        ChargingSessionWorkflow.transaction_stopped,
        TransactionStopped(
            event_id=3,
            transaction_id=tx,
            meter_stop_wh=9500,
            stopped_at=at(95),
            reason="PowerLoss",
        ),
    )
    final = await handle.result()
    rows = await billing_rows(session_factory, handle.id)
    truth = price_session(TARIFF, energy_wh=8500, duration_s=95 * 60).total_minor
    assert [(r.sequence, r.kind) for r in rows] == [(1, "final"), (2, "compensation")]
    assert sum(r.energy_wh for r in rows) == 8500
    assert sum(r.amount_minor for r in rows) == truth
    assert (final.state, final.end_reason, final.energy_wh, final.cost_minor) == (
        "closed",
        "abandoned_reconciled",
        8500,
        truth,
    )


async def _rows(factory: SessionFactory, workflow_id: str, count: int) -> list[BillingEvent]:
    rows = await billing_rows(factory, workflow_id)
    assert len(rows) == count, rows
    return rows


async def test_watchdog_spares_a_charger_that_still_talks(
    temporal_client: Client,
    session_worker: Worker,
    task_queue: str,
    seed: Seed,
) -> None:
    cb = await seed.charger(connected=True)  # last seen now
    tag = await seed.card("quiet")
    _, handle = await tap(temporal_client, task_queue, cb, tag, watchdog_silence_s=600.0)
    tx = tx_id()
    await handle.signal(ChargingSessionWorkflow.transaction_started, started(1, tx, cb, tag, 0))
    await eventually(lambda: _state_is(handle, "charging"))
    await handle.signal(
        ChargingSessionWorkflow.transaction_stopped,
        TransactionStopped(event_id=2, transaction_id=tx, meter_stop_wh=10, stopped_at=at(1)),
    )
    assert (await handle.result()).state == "closed"


async def test_continue_as_new_keeps_state(
    temporal_client: Client,
    session_worker: Worker,
    task_queue: str,
    seed: Seed,
    session_factory: SessionFactory,
) -> None:
    cb = await seed.charger()
    tag = await seed.card("long")
    _, handle = await tap(temporal_client, task_queue, cb, tag, continue_as_new_after_events=40)
    first_run = (await handle.describe()).run_id
    tx = tx_id()
    await handle.signal(ChargingSessionWorkflow.transaction_started, started(1, tx, cb, tag, 100))
    for i in range(2, 42):
        await handle.signal(
            ChargingSessionWorkflow.meter_progress,
            MeterProgress(
                event_id=i,
                transaction_id=tx,
                energy_register_wh=100 + i * 10,
                sampled_at=at(i / 2),
            ),
        )
    status = await eventually(lambda: _register_is(handle, 100 + 41 * 10))
    assert status.meter_start_wh == 100

    async def continued() -> bool:
        return (await handle.describe()).run_id != first_run

    await eventually(continued, message="a new run after continue-as-new")
    # An event seen by the first run is still recognised after continue-as-new.
    await handle.signal(ChargingSessionWorkflow.transaction_started, started(1, tx + 1, cb, tag, 7))
    await handle.signal(
        ChargingSessionWorkflow.transaction_stopped,
        TransactionStopped(event_id=99, transaction_id=tx, meter_stop_wh=600, stopped_at=at(25)),
    )
    final = await temporal_client.get_workflow_handle(handle.id, result_type=SessionStatus).result()
    assert (final.state, final.energy_wh, final.transaction_id) == ("closed", 500, tx)
    assert len(await billing_rows(session_factory, handle.id)) == 1


async def _register_is(handle: Handle, register_wh: int) -> SessionStatus:
    status = await handle.query(ChargingSessionWorkflow.status)
    assert status.last_register_wh == register_wh, status
    return status


async def test_validators_refuse_bad_updates(
    temporal_client: Client,
    session_worker: Worker,
    task_queue: str,
    seed: Seed,
) -> None:
    from temporalio.client import WorkflowUpdateFailedError

    cb = await seed.charger()
    tag = await seed.card("valid")
    _, handle = await tap(temporal_client, task_queue, cb, tag)
    with pytest.raises(WorkflowUpdateFailedError):
        await handle.execute_update(
            ChargingSessionWorkflow.pre_authorize,
            PreAuthorizeInput(id_tag=tag, charge_box_id="another-charger"),
        )
    with pytest.raises(WorkflowUpdateFailedError):
        await handle.execute_update(
            ChargingSessionWorkflow.remote_stop, RemoteStopInput(requested_by="driver")
        )
    await handle.terminate("test over")
