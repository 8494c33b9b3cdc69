"""OCPP 2.0.1 beside 1.6: negotiation per connection, provisioning messages, our CallErrors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from ocpp.exceptions import SecurityError
from ocpp.v16 import call as call16
from ocpp.v201 import call
from sqlalchemy import select, update
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from db.engine import SessionFactory
from db.models import AuditLog, Charger, Connector, MeterSample
from gateway.main import Gateway
from tests.gateway.conftest import charger_session, seed_charger
from tests.gateway.station201 import energy, station
from tests.helpers import ocpp_ts

BOOT = call.BootNotification(
    charging_station={"model": "M201", "vendorName": "Polaris", "firmwareVersion": "2.0.1-a"},
    reason="PowerUp",
)


async def _version(sf: SessionFactory, cb: str) -> str | None:
    async with sf() as s:
        return await s.scalar(select(Charger.ocpp_version).where(Charger.charge_box_id == cb))


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [
        (["ocpp2.0.1", "ocpp1.6"], "ocpp2.0.1"),
        (["ocpp1.6", "ocpp2.0.1"], "ocpp1.6"),
        (["ocpp0.1", "ocpp2.0.1"], "ocpp2.0.1"),
        (["ocpp1.6"], "ocpp1.6"),
    ],
)
async def test_the_chargers_order_of_preference_decides(
    gateway: Gateway, session_factory: SessionFactory, offered: list[str], chosen: str
) -> None:
    cb = await seed_charger(session_factory)
    async with connect(
        f"ws://127.0.0.1:{gateway.port}/ocpp/{cb}",
        subprotocols=offered,  # type: ignore[arg-type]
    ) as ws:
        assert ws.subprotocol == chosen
        await ws.send(json.dumps([2, "h1", "Heartbeat", {}]))
        answer = json.loads(await ws.recv())
        assert answer[0] == 3 and "currentTime" in answer[2]
    assert await _version(session_factory, cb) == chosen.removeprefix("ocpp")


async def test_no_common_protocol_is_refused_with_400(
    gateway: Gateway, session_factory: SessionFactory
) -> None:
    cb = await seed_charger(session_factory)
    with pytest.raises(InvalidStatus) as refused:
        async with connect(
            f"ws://127.0.0.1:{gateway.port}/ocpp/{cb}",
            subprotocols=["ocpp0.1", "ocpp2.1"],  # type: ignore[list-item]
        ):
            pass
    assert refused.value.response.status_code == 400


async def test_version_is_chosen_per_connection_never_cached(
    gateway: Gateway, session_factory: SessionFactory
) -> None:
    """A short 1.6 probe, then 2.0.1, then 1.6 again (a firmware rollback): each connection
    speaks its own version and the charger row shows the last one."""
    cb = await seed_charger(session_factory)
    async with charger_session(gateway, cb) as probe:
        await probe.call(call16.Heartbeat())
    assert await _version(session_factory, cb) == "1.6"
    async with station(gateway, cb) as cp:
        answer = await cp.call(BOOT)
        assert answer.status == "Accepted"
        assert await _version(session_factory, cb) == "2.0.1"
    async with charger_session(gateway, cb) as cp16:
        boot = await cp16.call(
            call16.BootNotification(charge_point_vendor="Polaris", charge_point_model="M16")
        )
        assert boot.status == "Accepted"
    assert await _version(session_factory, cb) == "1.6"


async def test_provisioning_messages_are_answered_and_stored(
    gateway: Gateway, session_factory: SessionFactory
) -> None:
    cb = await seed_charger(session_factory)
    async with station(gateway, cb) as cp:
        boot = await cp.call(BOOT)
        assert (boot.status, boot.interval) == ("Accepted", gateway.settings.heartbeat_interval_s)
        assert (await cp.call(call.Heartbeat())).current_time
        await cp.call(
            call.StatusNotification(
                timestamp=ocpp_ts(), connector_status="Occupied", evse_id=1, connector_id=1
            )
        )
        await cp.call(
            call.NotifyEvent(
                generated_at=ocpp_ts(),
                seq_no=0,
                event_data=[
                    {
                        "eventId": 1,
                        "timestamp": ocpp_ts(),
                        "trigger": "Delta",
                        "actualValue": "Occupied",
                        "eventNotificationType": "HardWiredNotification",
                        "component": {"name": "Connector", "evse": {"id": 1, "connectorId": 1}},
                        "variable": {"name": "AvailabilityState"},
                    }
                ],
            )
        )
        await cp.call(
            call.SecurityEventNotification(
                type="InvalidFirmwareSignature", timestamp=ocpp_ts(), tech_info="sig mismatch"
            )
        )
        await cp.call(call.FirmwareStatusNotification(status="Downloading", request_id=7))
        await cp.call(call.LogStatusNotification(status="Uploading", request_id=8))
        dt = await cp.call(call.DataTransfer(vendor_id="com.example"))
        assert dt.status == "UnknownVendorId"
        await cp.call(
            call.MeterValues(evse_id=0, meter_value=[energy(12.5, ocpp_ts(), unit="kWh")])
        )
    async with session_factory() as s:
        charger = await s.get(Charger, cb)
        assert charger is not None
        assert (charger.vendor, charger.model, charger.firmware_version) == (
            "Polaris",
            "M201",
            "2.0.1-a",
        )
        connector = await s.get(Connector, (cb, 1))
        assert connector is not None and connector.status == "Occupied"
        audit = (await s.execute(select(AuditLog).where(AuditLog.subject == cb))).scalars().all()
        events = [a for a in audit if a.action.startswith("security_event.")]
        assert [e.action for e in events] == ["security_event.InvalidFirmwareSignature"]
        assert events[0].details["tech_info"] == "sig mismatch"
        grid = (
            (await s.execute(select(MeterSample).where(MeterSample.charge_box_id == cb)))
            .scalars()
            .all()
        )
        assert [(g.connector_id, g.energy_wh, g.transaction_id) for g in grid] == [(0, 12500, None)]


async def test_pending_boot_refuses_other_messages_with_security_error(
    gateway: Gateway, session_factory: SessionFactory
) -> None:
    cb = await seed_charger(session_factory)
    async with session_factory.begin() as s:
        await s.execute(
            update(Charger).where(Charger.charge_box_id == cb).values(registration_status="Pending")
        )
    async with station(gateway, cb) as cp:
        assert (await cp.call(BOOT)).status == "Pending"
        with pytest.raises(SecurityError):
            await cp.call(call.Heartbeat(), suppress=False)
        async with session_factory.begin() as s:
            await s.execute(
                update(Charger)
                .where(Charger.charge_box_id == cb)
                .values(registration_status="Accepted")
            )
        assert (await cp.call(BOOT)).status == "Accepted"
        assert (await cp.call(call.Heartbeat(), suppress=False)).current_time


BOOT_PAYLOAD = {"reason": "PowerUp", "chargingStation": {"model": "M", "vendorName": "V"}}


def _tx_event(**over: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "eventType": "Started",
        "timestamp": ocpp_ts(),
        "triggerReason": "CablePluggedIn",
        "seqNo": 0,
        "transactionInfo": {"transactionId": "tx-1"},
    }
    payload.update(over)
    return payload


@pytest.mark.parametrize(
    ("frame", "code", "uid"),
    [
        ("not json", "RpcFrameworkError", "-1"),
        ('[2, "a1", "Heartbeat"', "RpcFrameworkError", "a1"),
        ("{}", "RpcFrameworkError", "-1"),
        ('[2, "a2", "Heartbeat"]', "RpcFrameworkError", "a2"),
        ('[2, "' + "x" * 37 + '", "Heartbeat", {}]', "RpcFrameworkError", "-1"),
        ('[7, "a3", "Heartbeat", {}]', "MessageTypeNotSupported", "a3"),
        ('[5, "a4", "Heartbeat", {}]', "MessageTypeNotSupported", "a4"),
        ('[2, "a5", "FooBar", {}]', "NotImplemented", "a5"),
        ('[2, "a6", "RequestStartTransaction", {}]', "NotSupported", "a6"),
        ('[2, "a7", "Heartbeat", []]', "FormatViolation", "a7"),
        ('[2, "a8", "Heartbeat", {"x": 1}]', "FormatViolation", "a8"),
        (
            '[2, "a9", "BootNotification", {"reason": "PowerUp"}]',
            "OccurrenceConstraintViolation",
            "a9",
        ),
        (
            json.dumps([2, "b1", "BootNotification", {**BOOT_PAYLOAD, "reason": 5}]),
            "TypeConstraintViolation",
            "b1",
        ),
        (
            json.dumps([2, "b2", "BootNotification", {**BOOT_PAYLOAD, "reason": "Bored"}]),
            "PropertyConstraintViolation",
            "b2",
        ),
        (
            json.dumps(
                [
                    2,
                    "b3",
                    "BootNotification",
                    {
                        "reason": "PowerUp",
                        "chargingStation": {"model": "M" * 21, "vendorName": "V"},
                    },
                ]
            ),
            "TypeConstraintViolation",
            "b3",
        ),
        (
            json.dumps([2, "b4", "TransactionEvent", _tx_event(timestamp="yesterday")]),
            "FormatViolation",
            "b4",
        ),
        (
            json.dumps([2, "b5", "TransactionEvent", _tx_event(seqNo="0")]),
            "TypeConstraintViolation",
            "b5",
        ),
        (
            json.dumps([2, "b6", "TransactionEvent", _tx_event(eventType="Paused")]),
            "PropertyConstraintViolation",
            "b6",
        ),
        (
            json.dumps([2, "b7", "Authorize", {"idToken": {"idToken": "AB"}}]),
            "OccurrenceConstraintViolation",
            "b7",
        ),
        (
            json.dumps([2, "b8", "StatusNotification", {"timestamp": ocpp_ts(), "evseId": 1}]),
            "OccurrenceConstraintViolation",
            "b8",
        ),
        (
            json.dumps([2, "b9", "MeterValues", {"evseId": 1, "meterValue": []}]),
            "OccurrenceConstraintViolation",
            "b9",
        ),
        (
            json.dumps([2, "c1", "SecurityEventNotification", {"type": "X"}]),
            "OccurrenceConstraintViolation",
            "c1",
        ),
        (
            json.dumps([2, "c2", "FirmwareStatusNotification", {"status": "Sleeping"}]),
            "PropertyConstraintViolation",
            "c2",
        ),
        (
            json.dumps([2, "c3", "LogStatusNotification", {}]),
            "OccurrenceConstraintViolation",
            "c3",
        ),
        (
            json.dumps([2, "c4", "DataTransfer", {"vendorId": 5}]),
            "TypeConstraintViolation",
            "c4",
        ),
        (
            json.dumps([2, "c5", "NotifyEvent", {"generatedAt": ocpp_ts(), "seqNo": 0}]),
            "OccurrenceConstraintViolation",
            "c5",
        ),
    ],
)
async def test_malformed_frames_get_the_2_0_1_call_error(
    gateway: Gateway, session_factory: SessionFactory, frame: str, code: str, uid: str
) -> None:
    cb = await seed_charger(session_factory)
    async with connect(
        f"ws://127.0.0.1:{gateway.port}/ocpp/{cb}",
        subprotocols=["ocpp2.0.1"],  # type: ignore[list-item]
    ) as ws:
        await ws.send(frame)
        answer = json.loads(await ws.recv())
        assert answer[:3] == [4, uid, code], answer
        # The connection stays open and answers the next message.
        await ws.send(json.dumps([2, "ok", "Heartbeat", {}]))
        assert json.loads(await ws.recv())[:2] == [3, "ok"]
