"""Driver tests: the real API (every router, the real authorization layer) and the real auth
service, the real worker, a real gateway and real ``ocpp`` 1.6 charge points."""

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
from sqlalchemy import select
from temporalio.worker import Worker
from websockets.asyncio.client import connect

from config.settings import Settings
from db.engine import SessionFactory
from db.models import Charger, Connector, Site, Tariff
from gateway.main import Gateway
from tests.gateway.conftest import FAST_FORWARD_W, uid
from tests.identity.conftest import (  # noqa: F401  (fixtures re-exported for this folder)
    api,
    identity_settings,
    lago_sandbox,
    worker,
)


class DriverCharger(ChargePoint):  # type: ignore[misc]
    """A charge point that answers remote starts as told and remembers every start and stop."""

    __test__ = False

    def __init__(self, *args: Any, start_answer: str = "Accepted", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.start_answer = start_answer
        self.remote_starts: list[dict[str, Any]] = []
        self.remote_stops: list[int] = []

    @on(Action.remote_start_transaction)
    async def on_remote_start(self, id_tag: str, **kwargs: Any) -> Any:
        self.remote_starts.append({"id_tag": id_tag, **kwargs})
        return call_result.RemoteStartTransaction(status=self.start_answer)

    @on(Action.remote_stop_transaction)
    async def on_remote_stop(self, transaction_id: int, **kwargs: Any) -> Any:
        self.remote_stops.append(transaction_id)
        return call_result.RemoteStopTransaction(status="Accepted")


@asynccontextmanager
async def plugged_in(
    gateway: Gateway, charge_box_id: str, *, start_answer: str = "Accepted"
) -> AsyncIterator[DriverCharger]:
    """A connected charge point that booted and reported its connectors Available."""
    async with connect(
        f"ws://127.0.0.1:{gateway.port}/ocpp/{charge_box_id}", subprotocols=["ocpp1.6"]
    ) as ws:
        cp = DriverCharger(charge_box_id, ws, start_answer=start_answer)
        task = asyncio.create_task(cp.start())
        try:
            await cp.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
            for connector in (1, 2):
                await cp.call(
                    call.StatusNotification(
                        connector_id=connector, error_code="NoError", status="Available"
                    )
                )
            yield cp
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
async def gateway(
    identity_settings: Settings,  # noqa: F811
    worker: Worker,  # noqa: F811
) -> AsyncIterator[Gateway]:
    """A real gateway on the test's task queue (meter progress signalled at once)."""
    settings = identity_settings.model_copy(
        update={
            "gateway_port": 0,
            "gateway_instance": uid("gw-").lower(),
            "meter_signal_interval_s": 0.0,
        }
    )
    gw = Gateway(settings, relay_poll_interval_s=0.5)
    await gw.start()
    try:
        await asyncio.wait_for(gw.link.wait(), 30)
        yield gw
    finally:
        await gw.stop()


async def seed_site(
    sf: SessionFactory, lat: float | None = None, lon: float | None = None, tz: str = "UTC"
) -> int:
    async with sf.begin() as db:
        site = Site(name=f"site-{uuid.uuid4().hex[:10]}", latitude=lat, longitude=lon, timezone=tz)
        db.add(site)
        await db.flush()
        return site.id


async def seed_tariff(sf: SessionFactory, *, per_kwh: int, per_session: int) -> str:
    code = f"t-{uuid.uuid4().hex[:10]}"
    async with sf.begin() as db:
        db.add(
            Tariff(
                code=code,
                currency="EUR",
                price_per_kwh_minor=per_kwh,
                price_per_session_minor=per_session,
            )
        )
    return code


async def seed_station(
    sf: SessionFactory,
    *,
    site_id: int | None = None,
    statuses: tuple[str, ...] = ("Available", "Available"),
    connected: bool = True,
    last_seen_at: datetime | None = None,
    charger_status: str = "Available",
    tariff: str | None = None,
    max_power_w: int = FAST_FORWARD_W,
) -> str:
    """A charger row with connectors 0..N in the given statuses (no socket: ``connected`` and
    ``last_seen_at`` are what a gateway would have written)."""
    cb = uid("CB-")
    async with sf.begin() as db:
        tariff_id = None
        if tariff is not None:
            tariff_id = await db.scalar(select(Tariff.id).where(Tariff.code == tariff))
        db.add(
            Charger(
                charge_box_id=cb,
                site_id=site_id,
                tariff_id=tariff_id,
                allow_unauthenticated=True,
                max_power_w=max_power_w,
                connected=connected,
                last_seen_at=last_seen_at if last_seen_at is not None else datetime.now(UTC),
            )
        )
        await db.flush()
        for n, status in enumerate((charger_status, *statuses)):
            db.add(Connector(charge_box_id=cb, connector_id=n, status=status))
    return cb
