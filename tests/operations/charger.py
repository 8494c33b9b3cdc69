"""A real ``ocpp`` 1.6 charge point that answers every central-system action as the test says:
``Accepted`` (the accepting answer), ``Rejected`` (the action's refusing status), ``NotSupported``
or ``NotImplemented`` (a CallError), ``never`` (no answer until released). ``received`` keeps
each CALL's payload in OCPP's names."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from ocpp.charge_point import camel_to_snake_case, snake_to_camel_case
from ocpp.exceptions import NotImplementedError as OcppNotImplemented
from ocpp.exceptions import NotSupportedError
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call_result

from domain.operations import CENTRAL_SYSTEM_ACTIONS

Mode = Literal["Accepted", "Rejected", "NotSupported", "NotImplemented", "never"]


def _soon(days: int = 1) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


# A valid request per action, in OCPP's own field names.
REQUESTS: dict[str, dict[str, Any]] = {
    "RemoteStartTransaction": {"idTag": "CARD-1", "connectorId": 1},
    "RemoteStopTransaction": {"transactionId": 42},
    "Reset": {"type": "Soft"},
    "UnlockConnector": {"connectorId": 1},
    "ChangeAvailability": {"connectorId": 0, "type": "Inoperative"},
    "GetConfiguration": {},
    "ChangeConfiguration": {"key": "HeartbeatInterval", "value": "60"},
    "ClearCache": {},
    "TriggerMessage": {"requestedMessage": "StatusNotification", "connectorId": 1},
    "DataTransfer": {"vendorId": "com.example", "messageId": "ping", "data": "x"},
    "GetLocalListVersion": {},
    "SendLocalList": {
        "listVersion": 2,
        "updateType": "Full",
        "localAuthorizationList": [{"idTag": "CARD-1", "idTagInfo": {"status": "Accepted"}}],
    },
    "ReserveNow": {
        "connectorId": 1,
        "expiryDate": _soon(),
        "idTag": "CARD-1",
        "reservationId": 7,
    },
    "CancelReservation": {"reservationId": 7},
    "SetChargingProfile": {
        "connectorId": 1,
        "csChargingProfiles": {
            "chargingProfileId": 1,
            "stackLevel": 0,
            "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Relative",
            "chargingSchedule": {
                "chargingRateUnit": "W",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 11000.5}],
            },
        },
    },
    "ClearChargingProfile": {"id": 1},
    "GetCompositeSchedule": {"connectorId": 1, "duration": 3600},
    "UpdateFirmware": {"location": "https://example.com/fw.bin", "retrieveDate": _soon(0)},
    "GetDiagnostics": {"location": "https://example.com/upload"},
}
assert set(REQUESTS) == set(CENTRAL_SYSTEM_ACTIONS)

# (accepting answer, refusing answer or None when the answer has no status)
ANSWERS: dict[str, tuple[dict[str, Any], dict[str, Any] | None]] = {
    "RemoteStartTransaction": ({"status": "Accepted"}, {"status": "Rejected"}),
    "RemoteStopTransaction": ({"status": "Accepted"}, {"status": "Rejected"}),
    "Reset": ({"status": "Accepted"}, {"status": "Rejected"}),
    "UnlockConnector": ({"status": "Unlocked"}, {"status": "NotSupported"}),
    "ChangeAvailability": ({"status": "Scheduled"}, {"status": "Rejected"}),
    "GetConfiguration": (
        {
            "configurationKey": [
                {"key": "HeartbeatInterval", "readonly": False, "value": "300"},
                {"key": "AuthorizationKey", "readonly": False, "value": "leaked-secret"},
            ],
            "unknownKey": [],
        },
        None,
    ),
    "ChangeConfiguration": ({"status": "Accepted"}, {"status": "NotSupported"}),
    "ClearCache": ({"status": "Accepted"}, {"status": "Rejected"}),
    "TriggerMessage": ({"status": "Accepted"}, {"status": "NotImplemented"}),
    "DataTransfer": ({"status": "Accepted", "data": "pong"}, {"status": "UnknownVendorId"}),
    "GetLocalListVersion": ({"listVersion": 3}, None),
    "SendLocalList": ({"status": "Accepted"}, {"status": "VersionMismatch"}),
    "ReserveNow": ({"status": "Accepted"}, {"status": "Occupied"}),
    "CancelReservation": ({"status": "Accepted"}, {"status": "Rejected"}),
    "SetChargingProfile": ({"status": "Accepted"}, {"status": "NotSupported"}),
    "ClearChargingProfile": ({"status": "Accepted"}, {"status": "Unknown"}),
    "GetCompositeSchedule": ({"status": "Accepted", "connectorId": 1}, {"status": "Rejected"}),
    "UpdateFirmware": ({}, None),
    "GetDiagnostics": ({"fileName": "diag.zip"}, None),
}


class OperationsCharger(ChargePoint):  # type: ignore[misc]
    """Answers as ``mode`` says; ``received`` holds (unique id, action, payload) of each CALL."""

    __test__ = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.mode: Mode = "Accepted"
        self.received: list[tuple[str, str, dict[str, Any]]] = []
        self.release = asyncio.Event()

    async def answer(self, action: str, unique_id: str, payload: dict[str, Any]) -> Any:
        self.received.append((unique_id, action, snake_to_camel_case(payload)))
        mode = self.mode
        if mode == "NotSupported":
            raise NotSupportedError(description=f"{action} is not supported here")
        if mode == "NotImplemented":
            raise OcppNotImplemented(description=f"{action} is not implemented here")
        if mode == "never":
            await self.release.wait()
        accepting, refusing = ANSWERS[action]
        chosen = refusing if mode == "Rejected" and refusing is not None else accepting
        return getattr(call_result, action)(**camel_to_snake_case(chosen))


def _handler(action: str) -> Any:
    async def handle(self: OperationsCharger, call_unique_id: str, **payload: Any) -> Any:
        return await self.answer(action, call_unique_id, payload)

    handle.__name__ = f"on_{action}"
    return on(action)(handle)


for _action in CENTRAL_SYSTEM_ACTIONS:
    setattr(OperationsCharger, f"on_{_action}", _handler(_action))
