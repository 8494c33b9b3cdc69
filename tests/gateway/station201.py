"""A real ``ocpp`` v201 charging station for the gateway tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from ocpp.routing import on
from ocpp.v201 import ChargePoint, call, call_result
from ocpp.v201.enums import Action
from websockets.asyncio.client import connect

from gateway.main import Gateway
from tests.helpers import ocpp_ts


class Station201(ChargePoint):  # type: ignore[misc]
    """A 2.0.1 charging station that accepts what the CSMS asks and remembers it."""

    __test__ = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.received: list[tuple[str, dict[str, Any]]] = []
        # The device model as (component, variable) → value.
        self.variables: dict[tuple[str, str], str] = {("OCPPCommCtrlr", "HeartbeatInterval"): "300"}

    @on(Action.request_start_transaction)
    async def on_request_start(self, **kwargs: Any) -> Any:
        self.received.append(("RequestStartTransaction", kwargs))
        return call_result.RequestStartTransaction(status="Accepted")

    @on(Action.request_stop_transaction)
    async def on_request_stop(self, **kwargs: Any) -> Any:
        self.received.append(("RequestStopTransaction", kwargs))
        return call_result.RequestStopTransaction(status="Accepted")

    @on(Action.reset)
    async def on_reset(self, **kwargs: Any) -> Any:
        self.received.append(("Reset", kwargs))
        return call_result.Reset(status="Accepted")

    @on(Action.unlock_connector)
    async def on_unlock(self, **kwargs: Any) -> Any:
        self.received.append(("UnlockConnector", kwargs))
        return call_result.UnlockConnector(status="Unlocked")

    @on(Action.change_availability)
    async def on_change_availability(self, **kwargs: Any) -> Any:
        self.received.append(("ChangeAvailability", kwargs))
        return call_result.ChangeAvailability(status="Accepted")

    @on(Action.trigger_message)
    async def on_trigger(self, **kwargs: Any) -> Any:
        self.received.append(("TriggerMessage", kwargs))
        return call_result.TriggerMessage(status="Accepted")

    @on(Action.get_transaction_status)
    async def on_transaction_status(self, **kwargs: Any) -> Any:
        self.received.append(("GetTransactionStatus", kwargs))
        return call_result.GetTransactionStatus(messages_in_queue=False, ongoing_indicator=True)

    @on(Action.set_variables)
    async def on_set_variables(self, set_variable_data: list[dict[str, Any]], **kw: Any) -> Any:
        self.received.append(("SetVariables", {"set_variable_data": set_variable_data}))
        for item in set_variable_data:
            key = (item["component"]["name"], item["variable"]["name"])
            self.variables[key] = item["attribute_value"]
        return call_result.SetVariables(
            set_variable_result=[
                {
                    "attributeStatus": "Accepted",
                    "component": {"name": item["component"]["name"]},
                    "variable": {"name": item["variable"]["name"]},
                }
                for item in set_variable_data
            ]
        )

    @on(Action.get_variables)
    async def on_get_variables(self, get_variable_data: list[dict[str, Any]], **kw: Any) -> Any:
        self.received.append(("GetVariables", {"get_variable_data": get_variable_data}))
        results = []
        for item in get_variable_data:
            key = (item["component"]["name"], item["variable"]["name"])
            result: dict[str, Any] = {
                "attributeStatus": "Accepted" if key in self.variables else "UnknownVariable",
                "component": {"name": key[0]},
                "variable": {"name": key[1]},
            }
            if key in self.variables:
                result["attributeValue"] = self.variables[key]
            results.append(result)
        return call_result.GetVariables(get_variable_result=results)

    @on(Action.get_base_report)
    async def on_get_base_report(self, **kwargs: Any) -> Any:
        self.received.append(("GetBaseReport", kwargs))
        return call_result.GetBaseReport(status="Accepted")


@asynccontextmanager
async def station(
    gateway: Gateway,
    charge_box_id: str,
    *,
    subprotocols: tuple[str, ...] = ("ocpp2.0.1",),
    cls: type[Station201] = Station201,
) -> AsyncIterator[Station201]:
    async with connect(
        f"ws://127.0.0.1:{gateway.port}/ocpp/{charge_box_id}",
        subprotocols=list(subprotocols),  # type: ignore[arg-type]
    ) as ws:
        assert ws.subprotocol == "ocpp2.0.1"
        cp = cls(charge_box_id, ws)
        task = asyncio.create_task(cp.start())
        try:
            yield cp
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def energy(
    value: float | int | str,
    at: str,
    *,
    unit: str = "Wh",
    multiplier: int = 0,
    context: str = "Sample.Periodic",
    signed: bool = False,
) -> dict[str, Any]:
    sv: dict[str, Any] = {
        "value": value,
        "context": context,
        "measurand": "Energy.Active.Import.Register",
        "unitOfMeasure": {"unit": unit, "multiplier": multiplier},
    }
    if signed:
        sv["signedMeterValue"] = {
            "signedMeterData": "AAECAw==",
            "signingMethod": "ECDSA-secp256r1-SHA256",
            "encodingMethod": "OCMF",
            "publicKey": "BAEC",
        }
    return {"timestamp": at, "sampledValue": [sv]}


def at_minutes(base: datetime, minutes: float) -> str:
    return ocpp_ts(minutes * 60, base=base)


def tx_event(
    event_type: str,
    seq_no: int,
    at: str,
    tx_id: str,
    *,
    trigger: str = "MeterValuePeriodic",
    state: str | None = None,
    id_token: dict[str, str] | None = None,
    meter: list[dict[str, Any]] | None = None,
    evse: bool = False,
    stopped_reason: str | None = None,
    remote_start_id: int | None = None,
    offline: bool | None = None,
) -> call.TransactionEvent:
    info: dict[str, Any] = {"transactionId": tx_id}
    if state:
        info["chargingState"] = state
    if stopped_reason:
        info["stoppedReason"] = stopped_reason
    if remote_start_id is not None:
        info["remoteStartId"] = remote_start_id
    return call.TransactionEvent(
        event_type=event_type,
        timestamp=at,
        trigger_reason=trigger,
        seq_no=seq_no,
        transaction_info=info,
        id_token=id_token,
        meter_value=meter,
        evse={"id": 1, "connectorId": 1} if evse else None,
        offline=offline,
    )
