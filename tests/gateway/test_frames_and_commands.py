"""Malformed frames get the precise CallError and the connection lives on; commands reach the
charger through the gateway's Temporal worker; shutdown says 1001."""

from __future__ import annotations

import json
import uuid

import pytest
from ocpp.v16 import call
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ActivityError, ApplicationError
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from db.engine import SessionFactory
from gateway.main import Gateway
from tests.gateway.conftest import charger_session, seed_charger
from tests.gateway.session_stub import CommandProbe, CommandProbeInput
from workflows.messages import ChargerCommandInput

BOOT = {"chargePointVendor": "Acme", "chargePointModel": "X"}


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ('[2, "m1", "Heartbeat", {', "FormationViolation"),
        ('{"not": "an array"}', "FormationViolation"),
        ('[2, "m2", "Heartbeat"]', "ProtocolError"),
        ('[2, "m3", "BootNotification", {"chargePointVendor": "Acme"}]', "ProtocolError"),
        (
            '[2, "m4", "BootNotification", {"chargePointVendor": 5, "chargePointModel": "X"}]',
            "TypeConstraintViolation",
        ),
        (
            '[2, "m5", "BootNotification", {"chargePointVendor": "'
            + "A" * 21
            + '", "chargePointModel": "X"}]',
            "TypeConstraintViolation",
        ),
        (
            '[2, "m6", "StatusNotification", {"connectorId": 1, "errorCode": "Melted", '
            '"status": "Available"}]',
            "PropertyConstraintViolation",
        ),
        ('[2, "m7", "Heartbeat", {"extra": 1}]', "FormationViolation"),
        ('[2, "m8", "FlyToTheMoon", {}]', "NotImplemented"),
        ('[2, "m9", "Reset", {"type": "Hard"}]', "NotSupported"),
        ('[2, "m10", "Heartbeat", []]', "FormationViolation"),
        ('[7, "m11", "Heartbeat", {}]', "PropertyConstraintViolation"),
        (
            '[2, "m15", "MeterValues", {"connectorId": 1, "meterValue": []}]',
            "OccurenceConstraintViolation",
        ),
        (
            '[2, "m16", "StatusNotification", {"connectorId": 1, "errorCode": "NoError", '
            '"status": "Available", "timestamp": ""}]',
            "TypeConstraintViolation",
        ),
        # Nesting past the JSON decoder's recursion limit, and past ours below it.
        ('[2, "m13", "Heartbeat", ' + "[" * 5000 + "]" * 5000 + "]", "FormationViolation"),
        ('[2, "m14", "DataTransfer", ' + '{"a":' * 40 + "1" + "}" * 40 + "]", "FormationViolation"),
        ("[" * 30000, "FormationViolation"),
        (
            '[2, "m12", "StartTransaction", {"connectorId": 1, "idTag": "X", "meterStart": 0, '
            '"timestamp": "yesterday"}]',
            "TypeConstraintViolation",
        ),
    ],
)
async def test_malformed_frames_get_precise_call_errors(
    gateway: Gateway, session_factory: SessionFactory, frame: str, code: str
) -> None:
    cb = await seed_charger(session_factory)
    async with connect(f"ws://127.0.0.1:{gateway.port}/ocpp/{cb}", subprotocols=["ocpp1.6"]) as ws:
        await ws.send(frame)
        answer = json.loads(await ws.recv())
        assert answer[0] == 4 and answer[2] == code, answer
        # The connection (and the process) carry on.
        await ws.send(json.dumps([2, "ok-1", "BootNotification", BOOT]))
        ok = json.loads(await ws.recv())
        assert ok[:2] == [3, "ok-1"] and ok[2]["status"] == "Accepted"


async def _probe(client: Client, gateway: Gateway, command: ChargerCommandInput) -> object:
    return await client.execute_workflow(
        CommandProbe.run,
        CommandProbeInput(
            charge_box_id=command.charge_box_id,
            gateway_task_queue=gateway.settings.gateway_task_queue,
            command=command,
        ),
        id=f"probe-{uuid.uuid4().hex}",
        task_queue=gateway.settings.temporal_task_queue,
    )


async def test_commands_reach_a_connected_charger(
    gateway: Gateway, session_factory: SessionFactory, temporal_client: Client
) -> None:
    cb = await seed_charger(session_factory)
    async with charger_session(gateway, cb) as cp:
        await cp.call(call.Heartbeat())
        result = await _probe(
            temporal_client,
            gateway,
            ChargerCommandInput(
                charge_box_id=cb,
                action="RemoteStartTransaction",
                payload={"idTag": "CARD-1", "connectorId": 1},
            ),
        )
        assert result.payload == {"status": "Accepted"}  # type: ignore[attr-defined]
        assert cp.last_remote_start == "CARD-1"
        config = await _probe(
            temporal_client,
            gateway,
            ChargerCommandInput(
                charge_box_id=cb, action="GetConfiguration", payload={"key": ["HeartbeatInterval"]}
            ),
        )
        assert config.payload["configurationKey"][0]["value"] == "300"  # type: ignore[attr-defined]
        with pytest.raises(WorkflowFailureError) as failure:
            await _probe(
                temporal_client,
                gateway,
                ChargerCommandInput(
                    charge_box_id=cb, action="UnlockConnector", payload={"connectorId": 1}
                ),
            )
        cause = failure.value.cause
        assert isinstance(cause, ActivityError) and isinstance(cause.cause, ApplicationError)
        assert cause.cause.type == "ChargerCallError"  # the test charger has no such handler


async def test_command_to_a_disconnected_charger_is_offline(
    gateway: Gateway, session_factory: SessionFactory, temporal_client: Client
) -> None:
    cb = await seed_charger(session_factory)
    with pytest.raises(WorkflowFailureError) as failure:
        await _probe(
            temporal_client,
            gateway,
            ChargerCommandInput(charge_box_id=cb, action="Reset", payload={"type": "Soft"}),
        )
    cause = failure.value.cause
    assert isinstance(cause, ActivityError) and isinstance(cause.cause, ApplicationError)
    assert cause.cause.type == "ChargerOffline"


async def test_graceful_shutdown_closes_with_1001(
    gateway: Gateway, session_factory: SessionFactory
) -> None:
    cb = await seed_charger(session_factory)
    async with connect(f"ws://127.0.0.1:{gateway.port}/ocpp/{cb}", subprotocols=["ocpp1.6"]) as ws:
        await ws.send(json.dumps([2, "b1", "BootNotification", BOOT]))
        await ws.recv()
        await gateway.stop()
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001


async def test_a_command_failing_outgoing_validation_reaches_the_workflow_with_its_reason(
    gateway: Gateway, session_factory: SessionFactory, temporal_client: Client
) -> None:
    """The ocpp library's error carries its message object; the workflow gets type and text."""
    cb = await seed_charger(session_factory)
    async with charger_session(gateway, cb) as cp:
        await cp.call(call.Heartbeat())
        with pytest.raises(WorkflowFailureError) as failure:
            await _probe(
                temporal_client,
                gateway,
                ChargerCommandInput(
                    charge_box_id=cb,
                    action="RemoteStartTransaction",
                    payload={"idTag": "X" * 25},  # idTag is at most 20 characters
                ),
            )
    cause = failure.value.cause
    assert isinstance(cause, ActivityError) and isinstance(cause.cause, ApplicationError)
    assert cause.cause.type == "InvalidCommandPayload"
    assert cause.cause.message.startswith("TypeConstraintViolationError: ")
    assert "too long" in cause.cause.message
    assert cause.cause.details[0]["error"] == "TypeConstraintViolationError"
