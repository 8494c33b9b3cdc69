"""The stand-in's OCPP 1.6J central system: ``/steve/websocket/CentralSystemService/{id}``.

It answers and records like SteVe: boots and statuses, ``Authorize`` from its own tags,
``StartTransaction`` with its own transaction ids (a resend gets the same id),
``MeterValues`` stored per transaction, ``StopTransaction`` closing the transaction. The REST
operations (``app.py``) reach a charger through :meth:`SteveStation.call`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar, cast

from ocpp.routing import on
from ocpp.v16 import ChargePoint, call_result
from ocpp.v16.enums import Action
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.exceptions import ConnectionClosed

from sandbox.steve.state import SteveState, iso, now, parse_iso

log = logging.getLogger("sandbox.steve.ocpp")

F = TypeVar("F", bound=Callable[..., Any])


def handles(action: Action) -> Callable[[F], F]:
    return cast(Callable[[F], F], on(action))


class StarletteSocket:
    """The two methods the ``ocpp`` library needs, over a Starlette WebSocket."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws

    async def recv(self) -> str:
        try:
            return await self.ws.receive_text()
        except WebSocketDisconnect as exc:
            raise ConnectionClosed(None, None) from exc

    async def send(self, message: str) -> None:
        await self.ws.send_text(message)


class SteveStation(ChargePoint):  # type: ignore[misc]
    """One connected charge box, as SteVe's central system sees it."""

    def __init__(self, charge_box_id: str, connection: Any, state: SteveState) -> None:
        super().__init__(charge_box_id, connection, response_timeout=30)
        self.state = state
        self.frames: list[str] = []

    async def route_message(self, raw_msg: str) -> None:
        self.frames.append(raw_msg)
        await super().route_message(raw_msg)

    @handles(Action.boot_notification)
    async def on_boot(self, charge_point_vendor: str, charge_point_model: str, **_: Any) -> Any:
        box = self.state.box(self.id)
        box.vendor, box.model = charge_point_vendor, charge_point_model
        self.state.boots.append((self.id, now()))
        return call_result.BootNotification(
            current_time=iso(now()), interval=300, status="Accepted"
        )

    @handles(Action.heartbeat)
    async def on_heartbeat(self, **_: Any) -> Any:
        self.state.box(self.id).last_heartbeat = now()
        return call_result.Heartbeat(current_time=iso(now()))

    @handles(Action.status_notification)
    async def on_status(self, connector_id: int, error_code: str, status: str, **_: Any) -> Any:
        self.state.box(self.id).statuses[connector_id] = status
        return call_result.StatusNotification()

    @handles(Action.authorize)
    async def on_authorize(self, id_tag: str, **_: Any) -> Any:
        return call_result.Authorize(id_tag_info=self.state.id_tag_info(id_tag))

    @handles(Action.start_transaction)
    async def on_start(
        self, connector_id: int, id_tag: str, meter_start: int, timestamp: str, **kwargs: Any
    ) -> Any:
        # The status is decided before the transaction counts against the tag.
        info = self.state.id_tag_info(id_tag)
        tx, created = self.state.start_transaction(
            self.id, connector_id, id_tag, int(meter_start), parse_iso(timestamp)
        )
        if not created:
            info = {**info, "status": "Accepted"} if info["status"] == "ConcurrentTx" else info
        reservation_id = kwargs.get("reservation_id")
        if reservation_id in self.state.reservations:
            self.state.reservations[reservation_id]["status"] = "Used"
        return call_result.StartTransaction(transaction_id=tx.id, id_tag_info=info)

    @handles(Action.meter_values)
    async def on_meter_values(
        self, connector_id: int, meter_value: list[dict[str, Any]], **kwargs: Any
    ) -> Any:
        tx = self.state.transactions.get(kwargs.get("transaction_id") or -1)
        if tx is not None:
            tx.values.extend(_flatten(meter_value))
        return call_result.MeterValues()

    @handles(Action.stop_transaction)
    async def on_stop(
        self, meter_stop: int, timestamp: str, transaction_id: int, **kwargs: Any
    ) -> Any:
        tx = self.state.transactions.get(transaction_id)
        if tx is not None:
            tx.values.extend(_flatten(kwargs.get("transaction_data") or []))
            self.state.stop_transaction(
                transaction_id, int(meter_stop), parse_iso(timestamp), kwargs.get("reason")
            )
        id_tag = kwargs.get("id_tag")
        info = self.state.id_tag_info(id_tag) if id_tag else None
        if info is not None and info["status"] == "ConcurrentTx":
            info["status"] = "Accepted"
        return call_result.StopTransaction(id_tag_info=info)

    @handles(Action.data_transfer)
    async def on_data_transfer(self, vendor_id: str, **_: Any) -> Any:
        return call_result.DataTransfer(status="UnknownVendorId")

    @handles(Action.diagnostics_status_notification)
    async def on_diag(self, status: str, **_: Any) -> Any:
        return call_result.DiagnosticsStatusNotification()

    @handles(Action.firmware_status_notification)
    async def on_fw(self, status: str, **_: Any) -> Any:
        return call_result.FirmwareStatusNotification()


def _flatten(meter_value: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """MeterValues as SteVe's ``connector_meter_value`` rows (one per sampled value)."""
    rows = []
    for mv in meter_value:
        stamp = mv.get("timestamp")
        for sv in mv.get("sampled_value") or mv.get("sampledValue") or []:
            row = {"valueTimestamp": stamp, "value": str(sv.get("value"))}
            for src, dst in (
                ("measurand", "measurand"),
                ("unit", "unit"),
                ("context", "readingContext"),
                ("format", "format"),
                ("location", "location"),
                ("phase", "phase"),
            ):
                if sv.get(src) is not None:
                    row[dst] = sv[src]
            rows.append(row)
    return rows
