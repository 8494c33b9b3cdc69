"""Operations tests: a real gateway, a real worker running ChargerOperationWorkflow, real
Temporal and PostgreSQL, and a real ``ocpp`` 1.6 charge point (``charger.py``)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from temporalio.client import Client
from temporalio.worker import Worker
from websockets.asyncio.client import connect

from activities.operations import OperationActivities
from config.settings import Settings
from db.engine import SessionFactory
from db.models import Charger
from gateway.main import Gateway
from services.actor import Actor
from services.context import ServiceContext
from tests.gateway.conftest import (  # noqa: F401  (fixtures re-exported for this folder)
    gateway,
    gw_settings,
    seed_charger,
)
from tests.gateway.session_stub import CommandProbe, RecordingSession
from tests.gateway.station201 import Station201
from tests.helpers import eventually
from tests.operations.charger import OperationsCharger
from workflows.charger_operation import ChargerOperationWorkflow

ADMIN = Actor(id="user:test-admin", role="admin", source="203.0.113.9")
OPERATOR = Actor(id="user:test-operator", role="operator", source="203.0.113.10")


@pytest.fixture
async def session_worker(
    temporal_client: Client, task_queue: str, session_factory: SessionFactory
) -> AsyncIterator[Worker]:
    """The gateway tests' stand-ins plus the operations workflow and its worker activity."""
    worker = Worker(
        temporal_client,
        task_queue=task_queue,
        workflows=[RecordingSession, CommandProbe, ChargerOperationWorkflow],
        activities=[OperationActivities(session_factory).finish_charger_operation],
    )
    async with worker:
        yield worker


@pytest.fixture
def ops_ctx(
    gw_settings: Settings,  # noqa: F811
    session_factory: SessionFactory,
    temporal_client: Client,
) -> ServiceContext:
    async def temporal() -> Client:
        return temporal_client

    settings = gw_settings.model_copy(update={"operation_pickup_timeout_s": 2.0})
    return ServiceContext(settings=settings, sessions=session_factory, temporal=temporal)


async def _connected(sf: SessionFactory, charge_box_id: str, value: bool) -> bool:
    async with sf() as db:
        row = await db.get(Charger, charge_box_id)
    return row is not None and row.connected is value


@asynccontextmanager
async def operations_charger(
    gateway: Gateway,  # noqa: F811
    sf: SessionFactory,
    charge_box_id: str,
    *,
    password: str | None = None,
) -> AsyncIterator[OperationsCharger]:
    headers = {}
    if password is not None:
        token = base64.b64encode(f"{charge_box_id}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    async with connect(
        f"ws://127.0.0.1:{gateway.port}/ocpp/{charge_box_id}",
        subprotocols=["ocpp1.6"],
        additional_headers=headers,
    ) as ws:
        cp = OperationsCharger(charge_box_id, ws)
        task = asyncio.create_task(cp.start())
        try:

            async def registered() -> bool:
                in_registry = gateway.registry.get(charge_box_id) is not None
                return in_registry and await _connected(sf, charge_box_id, True)

            await eventually(registered, message="the charger to be connected")
            yield cp
        finally:
            cp.release.set()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    await eventually(lambda: _connected(sf, charge_box_id, False), message="the disconnect")


@asynccontextmanager
async def station201(
    gateway: Gateway,  # noqa: F811
    sf: SessionFactory,
    charge_box_id: str,
    password: str | None = None,
) -> AsyncIterator[Station201]:
    headers = {}
    if password is not None:
        token = base64.b64encode(f"{charge_box_id}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    async with connect(
        f"ws://127.0.0.1:{gateway.port}/ocpp/{charge_box_id}",
        subprotocols=["ocpp2.0.1"],  # type: ignore[list-item]
        additional_headers=headers,
    ) as ws:
        assert ws.subprotocol == "ocpp2.0.1"
        cp = Station201(charge_box_id, ws)
        task = asyncio.create_task(cp.start())
        try:

            async def registered() -> bool:
                in_registry = gateway.registry.get(charge_box_id) is not None
                return in_registry and await _connected(sf, charge_box_id, True)

            await eventually(registered, message="the station to be connected")
            yield cp
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    await eventually(lambda: _connected(sf, charge_box_id, False), message="the disconnect")
