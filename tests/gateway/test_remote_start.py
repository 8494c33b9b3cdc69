"""Remote start end to end: the real gateway, the real worker, a real OCPP charge point.

The workflow records its intent (``session_intents``, origin ``remote``) before it sends
RemoteStartTransaction, so the StartTransaction that follows joins *that* workflow instead of
minting a new id; the stop bills it once.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ocpp.routing import on
from ocpp.v16 import call, call_result
from ocpp.v16.enums import Action
from pydantic import SecretStr
from sqlalchemy import select
from temporalio.client import Client
from websockets.asyncio.client import connect

from activities.sessions import RecordSessionIntentInput, SessionActivities
from config.settings import Settings
from db.engine import SessionFactory
from db.models import BillingEvent, Transaction, session_intents
from gateway.main import Gateway
from sandbox.lago.config import SandboxConfig
from tests.gateway.conftest import TestCharger, seed_card, seed_charger
from tests.helpers import eventually
from tests.sandbox.conftest import RunningSandbox, start_sandbox
from worker import build_worker
from workflows.charging_session import ChargingSessionWorkflow
from workflows.messages import RemoteStopInput, SessionInput, SessionStatus

pytestmark = pytest.mark.timeout(120)
LAGO_KEY = "remote-start-test-key"


class RemoteCharger(TestCharger):
    """Accepts remote starts and stops, and remembers them."""

    __test__ = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.remote_starts: list[dict[str, Any]] = []
        self.remote_stops: list[int] = []

    @on(Action.remote_start_transaction)
    async def on_remote_start(self, id_tag: str, **kwargs: Any) -> Any:
        self.remote_starts.append({"id_tag": id_tag, **kwargs})
        return call_result.RemoteStartTransaction(status="Accepted")

    @on(Action.remote_stop_transaction)
    async def on_remote_stop(self, transaction_id: int, **kwargs: Any) -> Any:
        self.remote_stops.append(transaction_id)
        return call_result.RemoteStopTransaction(status="Accepted")


@pytest.fixture(scope="module")
def lago() -> Iterator[RunningSandbox]:
    running = start_sandbox(SandboxConfig(api_key=LAGO_KEY))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def settings(base_settings: Settings, task_queue: str, lago: RunningSandbox) -> Settings:
    return base_settings.model_copy(
        update={
            "gateway_port": 0,
            "gateway_instance": f"gw-{uuid.uuid4().hex[:10]}",
            "temporal_task_queue": task_queue,
            "lago_api_url": lago.url,
            "lago_api_key": SecretStr(LAGO_KEY),
        }
    )


@pytest.fixture
async def stack(
    settings: Settings, temporal_client: Client, session_factory: SessionFactory
) -> AsyncIterator[Gateway]:
    """The real worker (sessions, billing) and the real gateway (relay, command worker)."""
    worker = build_worker(temporal_client, settings, session_factory)
    async with worker:
        gw = Gateway(settings, relay_poll_interval_s=0.5)
        await gw.start()
        try:
            await asyncio.wait_for(gw.link.wait(), 30)
            yield gw
        finally:
            await gw.stop()


async def _status(client: Client, workflow_id: str, state: str) -> SessionStatus:
    handle = client.get_workflow_handle_for(ChargingSessionWorkflow.run, workflow_id)
    status = await handle.query(ChargingSessionWorkflow.status)
    assert status.state == state, status
    return status


async def test_remote_start_joins_the_same_workflow_and_bills_once(
    stack: Gateway, temporal_client: Client, session_factory: SessionFactory
) -> None:
    cb = await seed_charger(session_factory)
    tag = await seed_card(session_factory)
    url = f"ws://127.0.0.1:{stack.port}/ocpp/{cb}"
    async with connect(url, subprotocols=["ocpp1.6"]) as ws:  # type: ignore[list-item]
        cp = RemoteCharger(cb, ws)
        reader = asyncio.create_task(cp.start())
        try:
            await cp.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
            workflow_id = f"session:{cb}:remote:{uuid.uuid4().hex[:8]}"
            handle = await temporal_client.start_workflow(
                ChargingSessionWorkflow.run,
                SessionInput(charge_box_id=cb, id_tag=tag, connector_id=1, origin="remote"),
                id=workflow_id,
                task_queue=stack.settings.temporal_task_queue,
            )
            await eventually(lambda: cp.remote_starts)
            assert cp.remote_starts == [{"id_tag": tag, "connector_id": 1}]
            async with session_factory() as db:
                intents = (
                    await db.execute(
                        select(session_intents).where(session_intents.c.workflow_id == workflow_id)
                    )
                ).all()
            assert [(i.origin, i.charge_box_id, i.id_tag, i.connector_id) for i in intents] == [
                ("remote", cb, tag, 1)
            ]

            now = datetime.now(UTC)
            start = await cp.call(
                call.StartTransaction(
                    connector_id=1, id_tag=tag, meter_start=1000, timestamp=now.isoformat()
                )
            )
            tx = start.transaction_id
            assert start.id_tag_info["status"] == "Accepted"
            async with session_factory() as db:
                row = await db.get(Transaction, tx)
                assert row is not None and row.workflow_id == workflow_id
            charging = await eventually(lambda: _status(temporal_client, workflow_id, "charging"))
            assert charging.transaction_id == tx
            later = (now + timedelta(minutes=5)).isoformat()
            await cp.call(
                call.MeterValues(
                    connector_id=1,
                    transaction_id=tx,
                    meter_value=[
                        {"timestamp": later, "sampledValue": [{"value": "2.5", "unit": "kWh"}]}
                    ],
                )
            )
            await eventually(
                lambda: _register(temporal_client, workflow_id, 2500), message="progress"
            )
            answer = await handle.execute_update(
                ChargingSessionWorkflow.remote_stop, RemoteStopInput(requested_by="driver")
            )
            assert answer.accepted
            assert cp.remote_stops == [tx]
            stop = await cp.call(
                call.StopTransaction(
                    meter_stop=3200,
                    timestamp=(now + timedelta(minutes=6)).isoformat(),
                    transaction_id=tx,
                    id_tag=tag,
                    reason="Remote",
                )
            )
            assert stop.id_tag_info["status"] == "Accepted"
            final = await handle.result()
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    assert (final.state, final.transaction_id, final.energy_wh) == ("closed", tx, 2200)
    assert final.end_reason == "Remote"
    async with session_factory() as db:
        rows = (
            await db.scalars(select(BillingEvent).where(BillingEvent.workflow_id == workflow_id))
        ).all()
        others = (
            await db.scalars(
                select(Transaction.workflow_id).where(
                    Transaction.charge_box_id == cb, Transaction.workflow_id != workflow_id
                )
            )
        ).all()
    assert [(r.kind, r.energy_wh) for r in rows] == [("final", 2200)]
    assert others == []


async def _register(client: Client, workflow_id: str, register_wh: int) -> bool:
    status = await _status(client, workflow_id, "charging")
    return status.last_register_wh == register_wh


async def test_record_session_intent_is_idempotent(session_factory: SessionFactory) -> None:
    activities = SessionActivities(session_factory)
    workflow_id = f"session:CB-X:remote:{uuid.uuid4().hex[:8]}"
    request = RecordSessionIntentInput(
        workflow_id=workflow_id, charge_box_id="CB-X", id_tag="TAG-X", expires_in_s=180
    )
    results = await asyncio.gather(*(activities.record_session_intent(request) for _ in range(3)))
    again = await activities.record_session_intent(request)
    assert sorted(r.created for r in results) == [False, False, True]
    assert {r.intent_id for r in [*results, again]} == {results[0].intent_id}
    assert not again.created
    async with session_factory() as db:
        count = len(
            (
                await db.execute(
                    select(session_intents.c.id).where(session_intents.c.workflow_id == workflow_id)
                )
            ).all()
        )
    assert count == 1
