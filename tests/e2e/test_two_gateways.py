"""Two gateways and two workers on one PostgreSQL and one Temporal, as real processes.

Chargers are spread across the gateways (as a TCP load balancer would spread them). A command
for any charger reaches the gateway holding its socket: the operation workflow sends it to
``gateway-<instance>``, the instance the charger's row names (written when it connected). A
charger that reconnects to the other gateway is found there; killing one gateway (SIGKILL)
moves its chargers to the other with nothing lost; every session is billed once, exactly.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ocpp.v16 import call
from ocpp.v16.enums import AuthorizationStatus
from pydantic import SecretStr
from sqlalchemy import select
from temporalio.client import Client

from activities.lago import LagoBilling
from config.settings import Settings
from config.temporal import DATA_CONVERTER
from db.engine import SessionFactory
from db.models import Charger
from services import operations
from services.actor import Actor
from services.context import ServiceContext
from tests.billing.conftest import API_KEY
from tests.e2e.cluster import Cluster, cluster
from tests.e2e.conftest import (
    SimulatedCharger,
    billed,
    lago_events,
    lago_wh,
    now_iso,
    seed_charger,
    seed_driver,
    transactions_for,
    workflow_of,
)
from tests.helpers import eventually
from tests.sandbox.conftest import RunningSandbox

pytestmark = pytest.mark.timeout(600)

CHARGERS = 6
METER_START_WH = 1_000
METER_STOP_WH = 4_321


@pytest.fixture
def two_by_two(tmp_path: Path, pg_url: str, lago_sandbox: RunningSandbox) -> Iterator[Cluster]:
    c = cluster(tmp_path, pg_url, lago_sandbox.url, gateways=2, workers=2)
    try:
        c.start()
        yield c
    finally:
        c.stop()


@pytest.fixture
async def ops_ctx(
    two_by_two: Cluster, base_settings: Settings, session_factory: SessionFactory
) -> ServiceContext:
    settings = base_settings.model_copy(
        update={
            "temporal_address": two_by_two.temporal_address,
            "temporal_task_queue": two_by_two.task_queue,
        }
    )
    client = await Client.connect(two_by_two.temporal_address, data_converter=DATA_CONVERTER)

    async def temporal() -> Client:
        return client

    return ServiceContext(settings=settings, sessions=session_factory, temporal=temporal)


async def _instance_of(factory: SessionFactory, charge_box_id: str) -> tuple[bool, str | None]:
    async with factory() as db:
        row = (
            await db.execute(
                select(Charger.connected, Charger.gateway_instance).where(
                    Charger.charge_box_id == charge_box_id
                )
            )
        ).one()
    return bool(row.connected), row.gateway_instance


async def _command_reaches(
    ctx: ServiceContext, charger: SimulatedCharger, c: Cluster, gateway: int
) -> None:
    """GetConfiguration for the charger is answered by it, through ``gateway``'s queue."""
    before = charger.commands.get("GetConfiguration", 0)
    op: dict[str, Any] = await operations.request_operation(
        ctx, Actor.cli(), charger.charge_box_id, "GetConfiguration", {}, timeout_s=30
    )
    assert op["status"] == "answered", (op, c.logs())
    assert charger.commands.get("GetConfiguration", 0) == before + 1
    assert await _instance_of(ctx.sessions, charger.charge_box_id) == (
        True,
        c.instances[gateway],
    )


async def test_two_gateways_two_workers(
    two_by_two: Cluster,
    ops_ctx: ServiceContext,
    session_factory: SessionFactory,
    base_settings: Settings,
    lago_sandbox: RunningSandbox,
) -> None:
    c = two_by_two
    lago = LagoBilling(
        base_settings.model_copy(
            update={"lago_api_url": lago_sandbox.url, "lago_api_key": SecretStr(API_KEY)}
        ),
        session_factory,
    )
    chargers: list[SimulatedCharger] = []
    sessions: list[tuple[SimulatedCharger, str, int, str]] = []
    home: dict[str, int] = {}
    try:
        # Spread across the two gateways; each starts a session and sends a reading.
        for i in range(CHARGERS):
            charge_box_id = await seed_charger(session_factory)
            driver = await seed_driver(session_factory, lago)
            assert driver.subscription is not None
            charger = SimulatedCharger(c.gateway_urls[i % 2], charge_box_id, answering=True)
            chargers.append(charger)
            home[charge_box_id] = i % 2
            await charger.connect()
            started = await charger.call(
                call.StartTransaction(
                    connector_id=1,
                    id_tag=driver.id_tag,
                    meter_start=METER_START_WH,
                    timestamp=now_iso(),
                )
            )
            assert started.id_tag_info["status"] == AuthorizationStatus.accepted
            tx = int(started.transaction_id)
            await charger.meter(tx, 1_500)
            sessions.append((charger, driver.id_tag, tx, driver.subscription))

        # A command for any charger reaches the gateway holding its socket.
        for charger in chargers:
            await _command_reaches(ops_ctx, charger, c, home[charger.charge_box_id])

        # A charger that reconnects to the other gateway is found there.
        mover = chargers[0]
        await mover.disconnect()
        mover.move_to(c.gateway_urls[1])
        await mover.connect()
        home[mover.charge_box_id] = 1
        await _command_reaches(ops_ctx, mover, c, 1)

        # Gateway 0 dies: its chargers come back through the load balancer on gateway 1.
        c.gateways[0].kill(signal.SIGKILL)
        for charger in chargers:
            if home[charger.charge_box_id] == 0:
                await charger.disconnect()
                charger.move_to(c.gateway_urls[1])
                await charger.connect()
                home[charger.charge_box_id] = 1
        for charger, _, tx, _ in sessions:
            await charger.meter(tx, 2_200)
            await _command_reaches(ops_ctx, charger, c, 1)

        for charger, id_tag, tx, _ in sessions:
            stopped = await charger.call(
                call.StopTransaction(
                    meter_stop=METER_STOP_WH,
                    timestamp=now_iso(),
                    transaction_id=tx,
                    id_tag=id_tag,
                    reason="Local",
                )
            )
            assert stopped.id_tag_info["status"] == AuthorizationStatus.accepted

        # Nothing lost, nothing handled twice: each session billed once, exactly.
        for _, _, tx, subscription in sessions:
            workflow_id = await workflow_of(session_factory, tx)

            async def done(workflow_id: str = workflow_id, sub: str = subscription) -> bool:
                result = await billed(session_factory, workflow_id)
                return (
                    result is not None
                    and result.state in ("billed", "closed")
                    and bool(lago_events(lago_sandbox, sub))
                )

            try:
                await eventually(done, timeout=180, interval=0.5, message=f"{workflow_id} billed")
            except AssertionError:
                raise AssertionError(f"{workflow_id} not billed\n{c.logs()}") from None
            result = await billed(session_factory, workflow_id)
            assert result is not None
            assert result.energy_wh == METER_STOP_WH - METER_START_WH
            assert [e.kind for e in result.events].count("final") == 1
            assert await transactions_for(session_factory, workflow_id) == 1
            events = lago_events(lago_sandbox, subscription)
            assert sorted(e["transaction_id"] for e in events) == sorted(
                e.transaction_id for e in result.events
            )
            assert lago_wh(events) == METER_STOP_WH - METER_START_WH
    finally:
        await asyncio.gather(*(ch.disconnect() for ch in chargers))
