"""An OCPP 2.0.1 charging station (the real ``ocpp`` v201 ChargePoint) against the live gateway
process: it can lose its connection (or its power) and come back, and it queues what it would
have sent while offline, as a real station does."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import websockets
from ocpp.v201 import call

from tests.gateway.station201 import Station201

SUBPROTOCOL = websockets.Subprotocol("ocpp2.0.1")


class SimulatedStation201:
    def __init__(self, url: str, charge_box_id: str) -> None:
        self.url = f"{url}/{charge_box_id}"
        self.charge_box_id = charge_box_id
        self._ws: Any = None
        self.cp: Station201 | None = None
        self._listener: asyncio.Task[None] | None = None
        # Messages the station would have sent while offline, replayed in order on reconnect.
        self.queue: list[Any] = []

    async def connect(self, reason: str = "PowerUp") -> Any:
        self._ws = await websockets.connect(self.url, subprotocols=[SUBPROTOCOL], open_timeout=30)
        assert self._ws.subprotocol == SUBPROTOCOL
        self.cp = Station201(self.charge_box_id, self._ws, response_timeout=30)
        self._listener = asyncio.create_task(self.cp.start())
        return await self.call(
            call.BootNotification(
                charging_station={"model": "E2E-201", "vendorName": "Polaris"}, reason=reason
            )
        )

    async def disconnect(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        self._ws = self.cp = self._listener = None

    async def call(self, payload: Any) -> Any:
        assert self.cp is not None, "not connected"
        return await self.cp.call(payload, suppress=False)

    async def replay(self) -> list[Any]:
        """Send the offline queue in its order; returns the answers."""
        answers = [await self.call(p) for p in self.queue]
        self.queue.clear()
        return answers
