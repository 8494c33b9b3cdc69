"""run_gateway as the process runs it, and the outbox surviving a Temporal outage."""

from __future__ import annotations

import asyncio
import json

import pytest
from ocpp.v16 import call
from sqlalchemy import select
from temporalio.client import Client
from temporalio.worker import Worker
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from config.settings import Settings
from db.engine import SessionFactory
from db.models import GatewayOutbox, Transaction
from gateway.main import Gateway, run_gateway
from tests.gateway.conftest import charger_session, seed_card, seed_charger
from tests.helpers import eventually, free_port, ocpp_ts


async def test_run_gateway_serves_until_cancelled(
    gw_settings: Settings, session_factory: SessionFactory
) -> None:
    settings = gw_settings.model_copy(update={"gateway_port": free_port()})
    cb = await seed_charger(session_factory)
    ready = asyncio.Event()
    task = asyncio.create_task(run_gateway(settings, ready=ready))
    await asyncio.wait_for(ready.wait(), 30)
    async with connect(
        f"ws://127.0.0.1:{settings.gateway_port}/ocpp/{cb}", subprotocols=["ocpp1.6"]
    ) as ws:
        await ws.send(json.dumps([2, "h1", "Heartbeat", {}]))
        assert json.loads(await ws.recv())[0] == 3
        task.cancel()  # what SIGTERM does
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_outbox_waits_out_a_temporal_outage(
    offline_gateway: Gateway,
    session_factory: SessionFactory,
    gw_settings: Settings,
    session_worker: Worker,
    temporal_client: Client,
) -> None:
    cb = await seed_charger(session_factory)
    id_tag = await seed_card(session_factory)
    async with charger_session(offline_gateway, cb) as cp:
        start = await cp.call(
            call.StartTransaction(
                connector_id=1, id_tag=id_tag, meter_start=10, timestamp=ocpp_ts(-5)
            )
        )
        assert start.id_tag_info["status"] == "Accepted"
    await offline_gateway.stop()
    async with session_factory() as s:
        tx = await s.get(Transaction, start.transaction_id)
        assert tx is not None
        row = (
            await s.execute(
                select(GatewayOutbox).where(GatewayOutbox.workflow_id == tx.workflow_id)
            )
        ).scalar_one()
        assert row.delivered_at is None and row.kind == "transaction_started"
    # Temporal is back (a gateway that can reach it): the relay drains the row.
    async with Gateway(gw_settings, relay_poll_interval_s=0.2):
        handle = temporal_client.get_workflow_handle(tx.workflow_id)

        async def started() -> bool:
            try:
                events = await handle.query("events")
            except Exception:
                return False
            return bool(events) and events[0][:2] == ["transaction_started", row.id]

        await eventually(started, timeout=30)
        assert await handle.query("origin") == "charger"
