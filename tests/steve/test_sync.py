# ruff: noqa: F811  (the session fixtures are imported, and requested by name)
"""SteVe sync runs end to end: the real worker (SyncRunWorkflow and its segment activities),
the real gateway (its outbox relay delivers what a run journals), Temporal, PostgreSQL, the
Lago sandbox and the contract-checked SteVe stand-in.

- SteVe → Polaris: a transaction made while the charger bypassed the relay becomes a session,
  billed once, and a second run changes nothing.
- Polaris → closed: a session open in Polaris but stopped in SteVe is closed with SteVe's stop
  values (and billed).
- Tags both ways, the stricter state winning.
- A failed run, its row and errors; a retry is a new run; a double-clicked trigger is one run.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from lago_python_client.models import BillableMetric, Charge, Charges, Plan
from ocpp.v16 import call
from sqlalchemy import select
from temporalio.client import Client

from activities.lago import DEFAULT_PLAN_CODE
from activities.steve import SteveClient
from config.settings import Settings
from db.engine import SessionFactory
from db.models import EvCard, GatewayOutbox
from db.steve_models import SteveSyncRun
from gateway.main import Gateway
from sandbox.lago.config import SandboxConfig
from sandbox.steve.server import RunningSteve
from services import steve as steve_service
from services.context import ServiceContext
from tests.gateway.conftest import seed_card
from tests.helpers import eventually
from tests.operations.conftest import ADMIN
from tests.sandbox.conftest import RunningSandbox, start_sandbox
from tests.sessions.conftest import (  # noqa: F401  (fixtures)
    LAGO_KEY,
    Station,
    billing_of,
    now,
    stack,
    station,
    stations,
    transaction,
)
from tests.sessions.test_forgotten_transactions import price, priced_charger
from tests.steve.conftest import PASSWORD, USER, field_charger, wait_for
from tests.steve.test_relay import billed, relayed_steve, stack_settings  # noqa: F401
from workflows.steve_messages import (
    CADENCE_WORKFLOW_ID,
    SEGMENTS,
    SIGNAL_CADENCE_ACTIVITY,
    SyncRunInput,
    SyncRunSummary,
)
from workflows.steve_sync import SyncRunWorkflow

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def lago() -> Iterator[RunningSandbox]:
    """The Lago sandbox with the deployment's metric and plan (subscriptions need the plan)."""
    running = start_sandbox(SandboxConfig(api_key=LAGO_KEY))
    try:
        client = running.client()
        metric = client.billable_metrics.create(
            BillableMetric(
                name="Energy",
                code=Settings().lago_billable_metric_code,
                aggregation_type="sum_agg",
                field_name="kwh",
            )
        )
        assert metric is not None
        client.plans.create(
            Plan(
                name="EV charging",
                code=DEFAULT_PLAN_CODE,
                interval="monthly",
                amount_cents=0,
                amount_currency="EUR",
                pay_in_advance=False,
                charges=Charges(
                    __root__=[
                        Charge(
                            billable_metric_id=metric.lago_id,
                            charge_model="standard",
                            properties={"amount": "0.30"},
                        )
                    ]
                ),
            )
        )
        yield running
    finally:
        running.stop()


def lago_events(lago: RunningSandbox, workflow_id: str) -> list[dict[str, Any]]:
    """The usage events Lago holds for one session (their transaction ids start with its id)."""
    return [
        e
        for e in lago.app.sandbox.state.events
        if str(e["transaction_id"]).startswith(workflow_id + ":")
    ]


async def sync(client: Client, settings: Settings, trigger: str = "cadence") -> SyncRunSummary:
    return await client.execute_workflow(
        SyncRunWorkflow.run,
        SyncRunInput(trigger=trigger),  # type: ignore[arg-type]
        id=f"steve-sync:test:{uuid.uuid4().hex[:10]}",
        task_queue=settings.temporal_task_queue,
        result_type=SyncRunSummary,
    )


async def run_row(sf: SessionFactory, run_id: int) -> SteveSyncRun:
    async with sf() as db:
        row = await db.get(SteveSyncRun, run_id)
    assert row is not None
    return row


async def test_a_transaction_made_past_the_relay_becomes_a_session_billed_once(
    lago: RunningSandbox,
    stack: Gateway,
    session_factory: SessionFactory,
    relayed_steve: RunningSteve,
    stack_settings: Settings,
    temporal_client: Client,
) -> None:
    sf = session_factory
    cb = await priced_charger(sf)
    tag = await seed_card(sf)
    relayed_steve.standin.state.add_tag(tag)
    # The charger talks to SteVe directly (the relay bypassed): Polaris sees nothing.
    async with field_charger(relayed_steve, cb) as cp:
        started = await cp.call(
            call.StartTransaction(connector_id=1, id_tag=tag, meter_start=1000, timestamp=now())
        )
        tx = int(started.transaction_id)
        await cp.call(call.StopTransaction(meter_stop=2500, timestamp=now(), transaction_id=tx))

    summary = await sync(temporal_client, stack_settings)
    assert summary.status == "completed", (await run_row(sf, summary.run_id)).errors
    row = await run_row(sf, summary.run_id)
    assert row.counters["transactions"]["imported"] == 1
    assert row.counters["transactions"]["stopped"] == 1
    assert [e["segment"] for e in row.log] == list(SEGMENTS)
    journaled = await transaction(sf, tx)  # SteVe's id
    assert (journaled.meter_start_wh, journaled.meter_stop_wh) == (1000, 2500)
    assert await billed(sf, journaled.workflow_id) == (1, 1500, price(1500))

    async def sent_to_lago() -> list[dict[str, Any]]:
        rows = await billing_of(sf, journaled.workflow_id)
        assert rows and all(r.sent_at is not None for r in rows)
        return lago_events(lago, journaled.workflow_id)

    assert len(await eventually(sent_to_lago, timeout=60)) == 1  # the owner got a subscription

    again = await sync(temporal_client, stack_settings)
    counters = (await run_row(sf, again.run_id)).counters["transactions"]
    assert (counters["imported"], counters["known"]) == (0, 1)
    assert len(await billing_of(sf, journaled.workflow_id)) == 1  # still billed once
    assert len(lago_events(lago, journaled.workflow_id)) == 1


async def test_a_session_stopped_in_steve_is_closed_with_steves_stop_values(
    stack: Gateway,
    stations: list[Station],
    session_factory: SessionFactory,
    relayed_steve: RunningSteve,
    stack_settings: Settings,
    temporal_client: Client,
) -> None:
    sf = session_factory
    cb = await priced_charger(sf)
    tag = await seed_card(sf)
    relayed_steve.standin.state.add_tag(tag)
    st = station(stack, stations, cb)
    await st.boot()
    await wait_for(lambda: cb in relayed_steve.standin.stations)
    tx, _ = await st.start(tag, 0)
    # The start reached the Adaptive Cadence too (the gateway's charger_activity event).
    async with sf() as db:
        activity = await db.scalar(
            select(GatewayOutbox.workflow_id).where(
                GatewayOutbox.kind == SIGNAL_CADENCE_ACTIVITY,
                GatewayOutbox.payload["signal"]["transaction_id"].as_integer() == tx,
            )
        )
    assert activity == CADENCE_WORKFLOW_ID
    await st.meter(tx, 800)
    await st.crash()  # the charger goes away; an operator stops the transaction in SteVe
    async with SteveClient(relayed_steve.url, USER, PASSWORD) as steve:
        await steve.stop_transaction(tx)
    assert (await transaction(sf, tx)).stopped_at is None  # still open in Polaris

    summary = await sync(temporal_client, stack_settings)
    row = await run_row(sf, summary.run_id)
    assert row.counters["local_reconcile"]["closed"] == 1, row.errors
    closed = await transaction(sf, tx)
    assert closed.meter_stop_wh == 800  # SteVe's stop value
    assert await billed(sf, closed.workflow_id) == (1, 800, price(800))


async def test_tags_go_both_ways_and_the_stricter_state_wins(
    stack: Gateway,
    session_factory: SessionFactory,
    relayed_steve: RunningSteve,
    stack_settings: Settings,
    temporal_client: Client,
) -> None:
    sf = session_factory
    state = relayed_steve.standin.state
    only_polaris = await seed_card(sf, mapped=False)
    blocked_in_polaris = await seed_card(sf, mapped=False)
    blocked_in_steve = await seed_card(sf, mapped=False)
    state.add_tag(blocked_in_polaris)
    state.add_tag(blocked_in_steve, max_active=0)
    only_steve = f"STV{uuid.uuid4().hex[:10].upper()}"
    state.add_tag(only_steve, expiry=datetime.now(UTC) + timedelta(days=30))
    async with sf.begin() as s:
        card = await s.get(EvCard, blocked_in_polaris)
        assert card is not None
        card.blocked = True

    summary = await sync(temporal_client, stack_settings)
    counters = (await run_row(sf, summary.run_id)).counters["tags"]
    assert counters["created_in_steve"] >= 1 and counters["created_in_polaris"] >= 1
    created = state.tag_by_id(only_polaris)
    assert created is not None and not created.blocked
    assert state.tag_by_id(blocked_in_polaris).blocked  # type: ignore[union-attr]
    async with sf() as db:
        cards = {
            c.id_tag: c
            for c in await db.scalars(
                select(EvCard).where(EvCard.id_tag.in_([only_steve, blocked_in_steve]))
            )
        }
    assert not cards[only_steve].blocked and cards[only_steve].label == "from SteVe"
    assert cards[blocked_in_steve].blocked
    # A second run has nothing left to do for these cards.
    again = await sync(temporal_client, stack_settings)
    counters = (await run_row(sf, again.run_id)).counters["tags"]
    assert counters["created_in_steve"] == counters["created_in_polaris"] == 0
    assert counters["blocked_in_steve"] == counters["blocked_in_polaris"] == 0


async def test_a_failed_run_is_recorded_and_a_retry_is_a_new_run(
    stack: Gateway,
    session_factory: SessionFactory,
    relayed_steve: RunningSteve,
    stack_settings: Settings,
    temporal_client: Client,
) -> None:
    sf = session_factory
    relayed_steve.standin.config.password = "rotated"  # SteVe now refuses our API user
    try:
        summary = await sync(temporal_client, stack_settings)
    finally:
        relayed_steve.standin.config.password = PASSWORD
    assert summary.status == "failed"
    row = await run_row(sf, summary.run_id)
    assert (row.status, row.finished_at is not None) == ("failed", True)
    failed = {e["segment"]: e for e in row.errors}
    assert failed["tags"]["type"] == "SteveAuthError"
    assert "401" in failed["tags"]["error"] and PASSWORD not in str(row.errors)

    async def temporal() -> Client:
        return temporal_client

    ctx = ServiceContext(settings=stack_settings, sessions=sf, temporal=temporal)
    retried = await steve_service.retry_run(ctx, ADMIN, summary.run_id)
    assert retried["started"]
    result: SyncRunSummary = await temporal_client.get_workflow_handle(
        retried["workflow_id"], result_type=SyncRunSummary
    ).result()
    assert result.run_id != summary.run_id and result.status == "completed"
    new_row = await run_row(sf, result.run_id)
    assert (new_row.trigger, new_row.retry_of) == ("retry", summary.run_id)
    assert (await run_row(sf, summary.run_id)).status == "failed"  # the old run stays as it was
    runs = await steve_service.list_runs(ctx, ADMIN, limit=5)
    assert [r["id"] for r in runs][:1] == [result.run_id]


async def test_a_double_clicked_manual_trigger_starts_one_run(
    stack: Gateway,
    session_factory: SessionFactory,
    stack_settings: Settings,
    temporal_client: Client,
) -> None:
    async def temporal() -> Client:
        return temporal_client

    ctx = ServiceContext(settings=stack_settings, sessions=session_factory, temporal=temporal)
    # A click window of its own (a random past minute), so no other run shares its id.
    at = datetime(2020, 1, 1, tzinfo=UTC) + timedelta(minutes=uuid.uuid4().int % 500_000)
    first: dict[str, Any] = await steve_service.trigger_sync(ctx, ADMIN, now=at)
    second = await steve_service.trigger_sync(ctx, ADMIN, now=at + timedelta(seconds=1))
    assert first["started"] and not second["started"]
    assert first["workflow_id"] == second["workflow_id"]
    summary: SyncRunSummary = await temporal_client.get_workflow_handle(
        first["workflow_id"], result_type=SyncRunSummary
    ).result()
    async with session_factory() as db:
        rows = list(
            await db.scalars(
                select(SteveSyncRun).where(SteveSyncRun.workflow_id == first["workflow_id"])
            )
        )
    assert [r.id for r in rows] == [summary.run_id] and rows[0].trigger == "manual"


async def test_a_run_running_for_over_30_minutes_is_reported_for_health(
    session_factory: SessionFactory,
) -> None:
    sf = session_factory
    before = await steve_service.stale_runs(sf)
    async with sf.begin() as s:
        stuck = SteveSyncRun(
            workflow_id=f"steve-sync:test-stuck:{uuid.uuid4().hex[:8]}",
            trigger="cadence",
            started_at=datetime.now(UTC) - timedelta(minutes=31),
        )
        recent = SteveSyncRun(
            workflow_id=f"steve-sync:test-recent:{uuid.uuid4().hex[:8]}", trigger="cadence"
        )
        s.add_all([stuck, recent])
    try:
        assert await steve_service.stale_runs(sf) == before + 1
    finally:
        async with sf.begin() as s:
            for run in (stuck, recent):
                await s.delete(await s.get(SteveSyncRun, run.id))
    assert await steve_service.stale_runs(sf) == before
