"""Session tests: the real worker (sessions, billing) and the real gateway in this process, with
real ``ocpp`` charge points that can crash and come back (closures, card limits, owners)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action
from pydantic import SecretStr
from sqlalchemy import select
from temporalio.client import Client
from websockets.asyncio.client import connect

from config.settings import Settings
from db.engine import SessionFactory
from db.models import BillingEvent, ChargingSession, Transaction
from gateway.main import Gateway
from sandbox.lago.config import SandboxConfig
from tests.sandbox.conftest import RunningSandbox, start_sandbox
from worker import build_worker

LAGO_KEY = "closure-test-key"


class Charger(ChargePoint):  # type: ignore[misc]
    """A charge point whose answer to RemoteStopTransaction the test chooses."""

    remote_stop_status = "Accepted"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.remote_stops: list[int] = []
        self.remote_starts: list[dict[str, Any]] = []

    @on(Action.remote_start_transaction)
    async def on_remote_start(self, id_tag: str, **kwargs: Any) -> Any:
        self.remote_starts.append({"id_tag": id_tag, **kwargs})
        return call_result.RemoteStartTransaction(status="Accepted")

    @on(Action.remote_stop_transaction)
    async def on_remote_stop(self, transaction_id: int, **kwargs: Any) -> Any:
        self.remote_stops.append(transaction_id)
        return call_result.RemoteStopTransaction(status=self.remote_stop_status)


@dataclass
class Station:
    """One charger's connection; ``crash()`` drops it the way a power loss does."""

    url: str
    charge_box_id: str
    cp: Charger | None = None
    _ws: Any = None
    _reader: asyncio.Task[None] | None = None

    async def boot(self) -> None:
        self._ws = await connect(f"{self.url}/{self.charge_box_id}", subprotocols=["ocpp1.6"])  # type: ignore[list-item]
        self.cp = Charger(self.charge_box_id, self._ws, response_timeout=30)
        self._reader = asyncio.create_task(self.cp.start())
        await self.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))

    async def crash(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        self.cp = self._ws = self._reader = None

    async def call(self, payload: Any) -> Any:
        assert self.cp is not None, "not connected"
        return await self.cp.call(payload, suppress=False)

    async def status(self, status: str, connector_id: int = 1) -> None:
        await self.call(
            call.StatusNotification(connector_id=connector_id, error_code="NoError", status=status)
        )

    async def tap(self, id_tag: str) -> str:
        answer = await self.call(call.Authorize(id_tag=id_tag))
        return str(answer.id_tag_info["status"])

    async def start(self, id_tag: str, meter_wh: int, connector_id: int = 1) -> tuple[int, str]:
        answer = await self.call(
            call.StartTransaction(
                connector_id=connector_id, id_tag=id_tag, meter_start=meter_wh, timestamp=now()
            )
        )
        return int(answer.transaction_id), str(answer.id_tag_info["status"])

    async def meter(self, transaction_id: int, register_wh: int, connector_id: int = 1) -> None:
        await self.call(
            call.MeterValues(
                connector_id=connector_id,
                transaction_id=transaction_id,
                meter_value=[
                    {
                        "timestamp": now(),
                        "sampledValue": [
                            {"value": str(register_wh), "unit": "Wh", "context": "Sample.Periodic"}
                        ],
                    }
                ],
            )
        )

    async def stop(self, transaction_id: int, meter_wh: int, **extra: Any) -> None:
        await self.call(
            call.StopTransaction(
                meter_stop=meter_wh, timestamp=now(), transaction_id=transaction_id, **extra
            )
        )


def now() -> str:
    return datetime.now(UTC).isoformat()


@pytest.fixture(scope="module")
def lago() -> Iterator[RunningSandbox]:
    running = start_sandbox(SandboxConfig(api_key=LAGO_KEY))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def stack_settings(base_settings: Settings, task_queue: str, lago: RunningSandbox) -> Settings:
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
    stack_settings: Settings, temporal_client: Client, session_factory: SessionFactory
) -> AsyncIterator[Gateway]:
    worker = build_worker(temporal_client, stack_settings, session_factory)
    async with worker:
        gw = Gateway(stack_settings, relay_poll_interval_s=0.5)
        await gw.start()
        try:
            await asyncio.wait_for(gw.link.wait(), 30)
            yield gw
        finally:
            await gw.stop()


@pytest.fixture
async def stations(stack: Gateway) -> AsyncIterator[list[Station]]:
    made: list[Station] = []
    yield made
    for station in made:
        await station.crash()


def station(stack: Gateway, made: list[Station], charge_box_id: str) -> Station:
    one = Station(f"ws://127.0.0.1:{stack.port}/ocpp", charge_box_id)
    made.append(one)
    return one


async def session_row(sf: SessionFactory, workflow_id: str) -> ChargingSession | None:
    async with sf() as db:
        return await db.get(ChargingSession, workflow_id)


async def billing_of(sf: SessionFactory, workflow_id: str) -> list[BillingEvent]:
    async with sf() as db:
        rows = await db.scalars(
            select(BillingEvent)
            .where(BillingEvent.workflow_id == workflow_id)
            .order_by(BillingEvent.sequence)
        )
        return list(rows)


async def transaction(sf: SessionFactory, transaction_id: int) -> Transaction:
    async with sf() as db:
        row = await db.get(Transaction, transaction_id)
    assert row is not None
    return row
