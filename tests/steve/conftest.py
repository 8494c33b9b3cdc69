"""The SteVe stand-in on a free port of the test loop, a real ``ocpp`` charge point connected to
it, and the REST adapter pointed at it. No response may break SteVe's OpenAPI document."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call_result
from ocpp.v16.enums import Action
from websockets.asyncio.client import connect

from activities.steve import SteveClient
from sandbox.steve.app import SteveConfig, SteveStandIn
from sandbox.steve.server import RunningSteve

USER = "polaris-test"
PASSWORD = "steve-test-password"


class FieldCharger(ChargePoint):  # type: ignore[misc]
    """Answers every operation the adapter sends; ``hang`` names actions it never answers."""

    __test__ = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.hang: set[str] = set()
        self.answers: dict[str, str] = {}

    async def _answer(self, action: str, fields: dict[str, Any], default: str) -> str:
        self.received.append((action, fields))
        if action in self.hang:
            await asyncio.sleep(3600)
        return self.answers.get(action, default)

    @on(Action.remote_start_transaction)
    async def on_remote_start(self, **kw: Any) -> Any:
        return call_result.RemoteStartTransaction(
            await self._answer("RemoteStartTransaction", kw, "Accepted")
        )

    @on(Action.remote_stop_transaction)
    async def on_remote_stop(self, **kw: Any) -> Any:
        return call_result.RemoteStopTransaction(
            await self._answer("RemoteStopTransaction", kw, "Accepted")
        )

    @on(Action.reset)
    async def on_reset(self, **kw: Any) -> Any:
        return call_result.Reset(await self._answer("Reset", kw, "Accepted"))

    @on(Action.unlock_connector)
    async def on_unlock(self, **kw: Any) -> Any:
        return call_result.UnlockConnector(await self._answer("UnlockConnector", kw, "Unlocked"))

    @on(Action.change_availability)
    async def on_availability(self, **kw: Any) -> Any:
        return call_result.ChangeAvailability(
            await self._answer("ChangeAvailability", kw, "Accepted")
        )

    @on(Action.trigger_message)
    async def on_trigger(self, **kw: Any) -> Any:
        return call_result.TriggerMessage(await self._answer("TriggerMessage", kw, "Accepted"))

    @on(Action.reserve_now)
    async def on_reserve(self, **kw: Any) -> Any:
        return call_result.ReserveNow(await self._answer("ReserveNow", kw, "Accepted"))

    @on(Action.cancel_reservation)
    async def on_cancel(self, **kw: Any) -> Any:
        return call_result.CancelReservation(
            await self._answer("CancelReservation", kw, "Accepted")
        )

    @on(Action.set_charging_profile)
    async def on_profile(self, **kw: Any) -> Any:
        return call_result.SetChargingProfile(
            await self._answer("SetChargingProfile", kw, "Accepted")
        )


async def wait_for(check: Any, timeout_s: float = 30.0) -> None:
    """Poll ``check`` until it holds (generous deadline; never a timing assertion)."""
    async with asyncio.timeout(timeout_s):
        while not check():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def box_id() -> str:
    return f"SB-{uuid.uuid4().hex[:10].upper()}"


@pytest.fixture
async def steve() -> AsyncIterator[RunningSteve]:
    standin = SteveStandIn(config=SteveConfig(user=USER, password=PASSWORD, call_timeout_s=1.0))
    running = RunningSteve(standin)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()
    violations = standin.contract_log.violations
    assert violations == [], f"responses that break SteVe's OpenAPI document: {violations}"


@pytest.fixture
async def steve_client(steve: RunningSteve) -> AsyncIterator[SteveClient]:
    async with SteveClient(steve.url, USER, PASSWORD, timeout_s=10) as client:
        yield client


@asynccontextmanager
async def field_charger(steve: RunningSteve, charge_box_id: str) -> AsyncIterator[FieldCharger]:
    """A charger connected straight to the stand-in (no relay)."""
    async with connect(steve.ws_url + charge_box_id, subprotocols=["ocpp1.6"]) as ws:  # type: ignore[list-item]
        cp = FieldCharger(charge_box_id, ws)
        task = asyncio.create_task(cp.start())
        try:
            await wait_for(lambda: charge_box_id in steve.standin.stations)
            yield cp
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
