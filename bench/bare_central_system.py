"""The baseline: a bare ``ocpp`` central system that does no work.

Same libraries as our gateway (websockets + ocpp's ChargePoint with schema validation), answers
every charger message at once with a fixed reply. Whatever our gateway costs on top of this is
the price of journaling, the outbox, local authorization and Temporal.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import signal
from datetime import UTC, datetime
from typing import Any

import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call_result
from ocpp.v16.enums import Action, AuthorizationStatus, RegistrationStatus
from websockets.asyncio.server import ServerConnection

_tx_ids = itertools.count(1)


class BareChargePoint(ChargePoint):  # type: ignore[misc]
    @on(Action.boot_notification)
    def on_boot(self, **_: Any) -> call_result.BootNotification:
        return call_result.BootNotification(
            current_time=datetime.now(UTC).isoformat(),
            interval=300,
            status=RegistrationStatus.accepted,
        )

    @on(Action.heartbeat)
    def on_heartbeat(self, **_: Any) -> call_result.Heartbeat:
        return call_result.Heartbeat(current_time=datetime.now(UTC).isoformat())

    @on(Action.status_notification)
    def on_status(self, **_: Any) -> call_result.StatusNotification:
        return call_result.StatusNotification()

    @on(Action.authorize)
    def on_authorize(self, **_: Any) -> call_result.Authorize:
        return call_result.Authorize(id_tag_info={"status": AuthorizationStatus.accepted})

    @on(Action.start_transaction)
    def on_start(self, **_: Any) -> call_result.StartTransaction:
        return call_result.StartTransaction(
            transaction_id=next(_tx_ids), id_tag_info={"status": AuthorizationStatus.accepted}
        )

    @on(Action.meter_values)
    def on_meter_values(self, **_: Any) -> call_result.MeterValues:
        return call_result.MeterValues()

    @on(Action.stop_transaction)
    def on_stop(self, **_: Any) -> call_result.StopTransaction:
        return call_result.StopTransaction()


async def _handler(ws: ServerConnection) -> None:
    charge_box_id = (ws.request.path if ws.request else "/x").rstrip("/").rsplit("/", 1)[-1]
    with contextlib.suppress(websockets.ConnectionClosed):
        await BareChargePoint(charge_box_id, ws).start()


async def serve(host: str, port: int, ready: asyncio.Event | None = None) -> None:
    async with websockets.serve(
        _handler,
        host,
        port,
        subprotocols=[websockets.Subprotocol("ocpp1.6")],
        max_queue=None,
    ) as server:
        if ready is not None:
            ready.set()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(f"bare central system on ws://{host}:{port}/ocpp/{{id}}", flush=True)
        await stop.wait()
        server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9900)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))
