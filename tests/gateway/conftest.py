"""A real gateway on a free port, real ocpp charge-point clients, seeded rows with unique ids."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import pytest
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call_result
from ocpp.v16.enums import Action
from temporalio.client import Client
from temporalio.worker import Worker
from websockets.asyncio.client import connect

from activities.operations import OperationActivities
from config.settings import Settings
from db.engine import SessionFactory
from db.models import Charger, EvCard, UserMapping
from gateway.main import Gateway
from gateway.passwords import hash_password
from tests.gateway.session_stub import CommandProbe, RecordingSession
from tests.helpers import free_port
from workflows.charger_operation import ChargerOperationWorkflow


class TestCharger(ChargePoint):  # type: ignore[misc]
    """A charge point that accepts whatever the central system asks."""

    __test__ = False

    @on(Action.remote_start_transaction)
    async def on_remote_start(self, id_tag: str, **kwargs: Any) -> Any:
        self.last_remote_start = id_tag
        return call_result.RemoteStartTransaction(status="Accepted")

    @on(Action.reset)
    async def on_reset(self, type: str, **kwargs: Any) -> Any:
        return call_result.Reset(status="Accepted")

    @on(Action.get_configuration)
    async def on_get_configuration(self, **kwargs: Any) -> Any:
        return call_result.GetConfiguration(
            configuration_key=[{"key": "HeartbeatInterval", "readonly": False, "value": "300"}]
        )


def uid(prefix: str = "CB") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12].upper()}"


# Test chargers deliver kWh in seconds: a power no real charger has keeps the gateway's
# plausibility check (max power × elapsed time) out of tests that are not about it.
FAST_FORWARD_W = 10**9


async def seed_charger(
    sf: SessionFactory,
    *,
    password: str | None = None,
    allow_unauthenticated: bool | None = None,
    max_power_w: int = FAST_FORWARD_W,
) -> str:
    """A charger row. Without a password it is marked ``allow_unauthenticated`` unless told
    otherwise: tests run with ``env="test"``, where (as in prod) a passwordless charger needs the
    operator's exemption to connect."""
    charge_box_id = uid("CB-")
    if allow_unauthenticated is None:
        allow_unauthenticated = password is None
    async with sf.begin() as s:
        s.add(
            Charger(
                charge_box_id=charge_box_id,
                password_hash=hash_password(password) if password else None,
                max_power_w=max_power_w,
                allow_unauthenticated=allow_unauthenticated,
            )
        )
    return charge_box_id


async def seed_card(
    sf: SessionFactory,
    *,
    prefix: str = "T",
    blocked: bool = False,
    is_active: bool = True,
    expires_at: datetime | None = None,
    parent: str | None = None,
    mapped: bool = True,
    lost_at: datetime | None = None,
) -> str:
    id_tag = uid(prefix)[:20]
    async with sf.begin() as s:
        s.add(
            EvCard(
                id_tag=id_tag,
                blocked=blocked,
                is_active=is_active,
                expires_at=expires_at,
                parent_id_tag=parent,
                lost_at=lost_at,
            )
        )
        await s.flush()
        if mapped:
            s.add(UserMapping(user_id=f"user-{id_tag}", public_id=id_tag[-8:], id_tag=id_tag))
    return id_tag


@asynccontextmanager
async def charger_session(
    gateway: Gateway,
    charge_box_id: str,
    *,
    password: str | None = None,
    path: str = "/ocpp/",
    source: str = "127.0.0.1",
) -> AsyncIterator[TestCharger]:
    """``source``: the loopback address the client connects from (any 127.x.y.z works), so
    tests can stand for distinct client addresses."""
    headers = {}
    if password is not None:
        token = base64.b64encode(f"{charge_box_id}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    async with connect(
        f"ws://127.0.0.1:{gateway.port}{path}{charge_box_id}",
        subprotocols=["ocpp1.6"],
        additional_headers=headers,
        local_addr=(source, 0),
    ) as ws:
        cp = TestCharger(charge_box_id, ws)
        task = asyncio.create_task(cp.start())
        try:
            yield cp
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
def gw_settings(base_settings: Settings, task_queue: str) -> Settings:
    return base_settings.model_copy(
        update={
            "gateway_port": 0,
            # /metrics and /healthz on a port of their own (any free one).
            "gateway_metrics_port": 0,
            "gateway_instance": uid("gw-").lower(),
            "temporal_task_queue": task_queue,
            "authorize_budget_s": 2.0,
        }
    )


@pytest.fixture
async def session_worker(
    temporal_client: Client, task_queue: str, session_factory: SessionFactory
) -> AsyncIterator[Worker]:
    """The session stand-ins, and the operations workflow (API/CLI commands to chargers)."""
    worker = Worker(
        temporal_client,
        task_queue=task_queue,
        workflows=[RecordingSession, CommandProbe, ChargerOperationWorkflow],
        activities=[OperationActivities(session_factory).finish_charger_operation],
    )
    async with worker:
        yield worker


@pytest.fixture
async def gateway(gw_settings: Settings, session_worker: Worker) -> AsyncIterator[Gateway]:
    gw = Gateway(gw_settings, relay_poll_interval_s=0.5)
    await gw.start()
    await asyncio.wait_for(gw.link.wait(), 30)
    try:
        yield gw
    finally:
        await gw.stop()


@pytest.fixture
async def offline_gateway(gw_settings: Settings) -> AsyncIterator[Gateway]:
    """A gateway whose Temporal address points at a closed port."""
    settings = gw_settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})
    gw = Gateway(settings, relay_poll_interval_s=0.5)
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()
