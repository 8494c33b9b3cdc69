"""The real stack for reservations: a worker (every workflow), a gateway (relay, command
worker) and ``ocpp`` 1.6 charge points that answer ReserveNow and CancelReservation as told."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action
from temporalio.client import Client
from websockets.asyncio.client import connect

from config.settings import Settings
from db.engine import SessionFactory
from db.models import Connector
from gateway.main import Gateway
from services.context import ServiceContext
from worker import build_worker


class ReservingCharger(ChargePoint):  # type: ignore[misc]
    """Answers ReserveNow with ``answers`` in turn (then Accepted); keeps what it received with
    the time it arrived (``reserve_now``: (received_at, payload); ``cancels``: payloads)."""

    __test__ = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.answers: list[str] = []
        self.reserve_now: list[tuple[datetime, dict[str, Any]]] = []
        self.cancels: list[dict[str, Any]] = []

    @on(Action.reserve_now)
    async def on_reserve_now(self, **payload: Any) -> Any:
        self.reserve_now.append((datetime.now(UTC), payload))
        status = self.answers.pop(0) if self.answers else "Accepted"
        return call_result.ReserveNow(status=status)

    @on(Action.cancel_reservation)
    async def on_cancel_reservation(self, reservation_id: int, **_: Any) -> Any:
        self.cancels.append({"reservation_id": reservation_id})
        return call_result.CancelReservation(status="Accepted")

    async def start_transaction(
        self, connector_id: int, id_tag: str, reservation_id: int | None = None
    ) -> Any:
        return await self.call(
            call.StartTransaction(
                connector_id=connector_id,
                id_tag=id_tag,
                meter_start=1000,
                timestamp=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                reservation_id=reservation_id,
            )
        )


@pytest.fixture
def res_settings(base_settings: Settings, task_queue: str) -> Settings:
    return base_settings.model_copy(
        update={
            "gateway_port": 0,
            "gateway_instance": f"gw-{uuid.uuid4().hex[:10]}",
            "temporal_task_queue": task_queue,
            "reservation_lead_s": 2.0,
            "reservation_no_show_s": 600.0,
            "reservation_offline_retry_s": 1.0,
        }
    )


def make_ctx(settings: Settings, sf: SessionFactory, client: Client) -> ServiceContext:
    async def temporal() -> Client:
        return client

    return ServiceContext(settings=settings, sessions=sf, temporal=temporal)


@pytest.fixture
def ctx(res_settings: Settings, session_factory: SessionFactory, temporal_client: Client) -> Any:
    return make_ctx(res_settings, session_factory, temporal_client)


@pytest.fixture
async def stack(
    res_settings: Settings, temporal_client: Client, session_factory: SessionFactory
) -> AsyncIterator[Gateway]:
    async with build_worker(temporal_client, res_settings, session_factory):
        gw = Gateway(res_settings, relay_poll_interval_s=0.5)
        await gw.start()
        try:
            await asyncio.wait_for(gw.link.wait(), 30)
            yield gw
        finally:
            await gw.stop()


async def add_connectors(sf: SessionFactory, charge_box_id: str, *ids: int) -> None:
    async with sf.begin() as db:
        for connector_id in ids:
            db.add(
                Connector(
                    charge_box_id=charge_box_id, connector_id=connector_id, status="Available"
                )
            )


@asynccontextmanager
async def charge_point(gateway: Gateway, charge_box_id: str) -> AsyncIterator[ReservingCharger]:
    """A connected, booted charge point."""
    async with connect(
        f"ws://127.0.0.1:{gateway.port}/ocpp/{charge_box_id}", subprotocols=["ocpp1.6"]
    ) as ws:  # type: ignore[list-item]
        cp = ReservingCharger(charge_box_id, ws)
        task = asyncio.create_task(cp.start())
        try:
            await cp.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
            yield cp
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
