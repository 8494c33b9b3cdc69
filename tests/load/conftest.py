"""The real stack for site load management: a worker (every workflow), a gateway (relay,
command worker) and ``ocpp`` 1.6 charge points that keep the charging profiles they receive and
answer GetCompositeSchedule from them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action
from temporalio.client import Client
from temporalio.worker import Worker
from websockets.asyncio.client import connect

from config.settings import Settings
from db.engine import SessionFactory
from gateway.main import Gateway
from services.context import ServiceContext
from tests.helpers import ocpp_ts
from worker import build_worker


def _limit(value: Any) -> int:
    return int(Decimal(str(value)))


class ProfileCharger(ChargePoint):  # type: ignore[misc]
    """Keeps charging profiles as OCPP 1.6 says (simply): one TxProfile per connector for its
    transaction, one TxDefaultProfile (connector 0: every connector). ``received`` lists every
    SetChargingProfile/ClearChargingProfile, in order."""

    __test__ = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # (connector id, purpose) → the profile as received (snake_case keys).
        self.profiles: dict[tuple[int, str], dict[str, Any]] = {}
        self.received: list[tuple[str, int, dict[str, Any]]] = []
        # connector id → its running transaction id.
        self.transactions: dict[int, int] = {}
        # How many TxProfiles to refuse before accepting (a charger not ready for them yet).
        self.refuse_tx_profiles = 0

    @on(Action.set_charging_profile)
    async def on_set_charging_profile(
        self, connector_id: int, cs_charging_profiles: dict[str, Any], **_: Any
    ) -> Any:
        purpose = cs_charging_profiles["charging_profile_purpose"]
        self.received.append(("Set", connector_id, cs_charging_profiles))
        if purpose == "TxProfile" and self.refuse_tx_profiles > 0:
            self.refuse_tx_profiles -= 1
            return call_result.SetChargingProfile(status="Rejected")
        if purpose == "TxProfile":
            tx = cs_charging_profiles.get("transaction_id")
            if connector_id == 0 or self.transactions.get(connector_id) != tx:
                return call_result.SetChargingProfile(status="Rejected")
        self.profiles[(connector_id, purpose)] = cs_charging_profiles
        return call_result.SetChargingProfile(status="Accepted")

    @on(Action.clear_charging_profile)
    async def on_clear_charging_profile(self, id: int | None = None, **_: Any) -> Any:
        self.received.append(("Clear", 0, {"id": id}))
        gone = [k for k, p in self.profiles.items() if p["charging_profile_id"] == id]
        for key in gone:
            del self.profiles[key]
        return call_result.ClearChargingProfile(status="Accepted" if gone else "Unknown")

    def limit_of(self, connector_id: int) -> tuple[int, str] | None:
        """The composite limit: the connector's TxProfile for its running transaction, else the
        TxDefaultProfile (the connector's own, else connector 0's)."""
        tx = self.profiles.get((connector_id, "TxProfile"))
        if tx is not None and tx.get("transaction_id") == self.transactions.get(connector_id):
            chosen = tx
        else:
            chosen = self.profiles.get((connector_id, "TxDefaultProfile")) or self.profiles.get(
                (0, "TxDefaultProfile")
            )
        if chosen is None:
            return None
        schedule = chosen["charging_schedule"]
        return _limit(schedule["charging_schedule_period"][0]["limit"]), schedule[
            "charging_rate_unit"
        ]

    @on(Action.get_composite_schedule)
    async def on_get_composite_schedule(self, connector_id: int, duration: int, **_: Any) -> Any:
        found = self.limit_of(connector_id)
        if found is None:
            return call_result.GetCompositeSchedule(status="Rejected")
        limit, unit = found
        return call_result.GetCompositeSchedule(
            status="Accepted",
            connector_id=connector_id,
            schedule_start=ocpp_ts(),
            charging_schedule={
                "duration": duration,
                "charging_rate_unit": unit,
                "charging_schedule_period": [{"start_period": 0, "limit": limit}],
            },
        )

    async def start_charging(self, connector_id: int, id_tag: str) -> int:
        answer = await self.call(
            call.StartTransaction(
                connector_id=connector_id, id_tag=id_tag, meter_start=0, timestamp=ocpp_ts()
            )
        )
        self.transactions[connector_id] = answer.transaction_id
        return int(answer.transaction_id)

    async def stop_charging(self, connector_id: int) -> None:
        tx = self.transactions.pop(connector_id)
        # OCPP 1.6: a TxProfile ends with its transaction.
        self.profiles.pop((connector_id, "TxProfile"), None)
        await self.call(
            call.StopTransaction(meter_stop=1000, timestamp=ocpp_ts(), transaction_id=tx)
        )


class Stack:
    """A gateway and a worker that a test can restart."""

    def __init__(
        self, settings: Settings, client: Client, sf: SessionFactory, gateway: Gateway
    ) -> None:
        self.settings = settings
        self.client = client
        self.sf = sf
        self.gateway = gateway
        self._worker: Worker | None = None
        self._task: asyncio.Task[None] | None = None

    def start_worker(self) -> None:
        self._worker = build_worker(self.client, self.settings, self.sf)
        self._task = asyncio.create_task(self._worker.run())

    async def stop_worker(self) -> None:
        if self._worker is not None and self._task is not None:
            await self._worker.shutdown()
            await asyncio.gather(self._task, return_exceptions=True)
        self._worker, self._task = None, None

    async def restart_worker(self) -> None:
        await self.stop_worker()
        self.start_worker()


@pytest.fixture
def load_settings(base_settings: Settings, task_queue: str) -> Settings:
    return base_settings.model_copy(
        update={
            "gateway_port": 0,
            "gateway_instance": f"gw-{uuid.uuid4().hex[:10]}",
            "temporal_task_queue": task_queue,
        }
    )


@pytest.fixture
def ctx(load_settings: Settings, session_factory: SessionFactory, temporal_client: Client) -> Any:
    async def temporal() -> Client:
        return temporal_client

    return ServiceContext(settings=load_settings, sessions=session_factory, temporal=temporal)


@pytest.fixture
async def stack(
    load_settings: Settings, temporal_client: Client, session_factory: SessionFactory
) -> AsyncIterator[Stack]:
    gw = Gateway(load_settings, relay_poll_interval_s=0.5)
    s = Stack(load_settings, temporal_client, session_factory, gw)
    s.start_worker()
    await gw.start()
    try:
        await asyncio.wait_for(gw.link.wait(), 30)
        yield s
    finally:
        await gw.stop()
        await s.stop_worker()


@asynccontextmanager
async def charge_point(
    gateway: Gateway, charge_box_id: str, **state: Any
) -> AsyncIterator[ProfileCharger]:
    """A connected, booted charge point; ``state``: attributes set before it boots (the
    transactions it kept running, say)."""
    async with connect(
        f"ws://127.0.0.1:{gateway.port}/ocpp/{charge_box_id}", subprotocols=["ocpp1.6"]
    ) as ws:  # type: ignore[list-item]
        cp = ProfileCharger(charge_box_id, ws)
        for name, value in state.items():
            setattr(cp, name, value)
        task = asyncio.create_task(cp.start())
        try:
            await cp.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
            yield cp
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def now() -> datetime:
    return datetime.now(UTC)
