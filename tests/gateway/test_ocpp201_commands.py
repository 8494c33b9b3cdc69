"""Commands to an OCPP 2.0.1 connection: the operations family (named as in 1.6, plus the 2.0.1-only
ones) translated per connection by the gateway, answers translated back; a 2.0.1-only CallError
code is a clear failure; a remote start is matched by its remoteStartId and stopped with the
charger's own transaction id (real gateway, real Temporal, real v201 charge points)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ocpp.v16 import call as call16
from ocpp.v201 import call
from sqlalchemy import select
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ActivityError, ApplicationError
from websockets.asyncio.client import connect

from db.engine import SessionFactory
from db.models import BillingEvent, Transaction
from db.ocpp201_models import Ocpp201DeviceVariable
from db.operation_models import ChargerOperation
from gateway.main import Gateway
from tests.gateway.conftest import charger_session, seed_card, seed_charger
from tests.gateway.session_stub import CommandProbe, CommandProbeInput
from tests.gateway.station201 import Station201, at_minutes, energy, station, tx_event
from tests.gateway.test_remote_start import lago, settings, stack  # noqa: F401  (fixtures)
from tests.helpers import eventually
from workflows.charging_session import ChargingSessionWorkflow
from workflows.messages import ChargerCommandInput, RemoteStopInput, SessionInput

pytestmark = pytest.mark.timeout(120)


async def _probe(client: Client, gateway: Gateway, cb: str, action: str, payload: Any) -> Any:
    result = await client.execute_workflow(
        CommandProbe.run,
        CommandProbeInput(
            charge_box_id=cb,
            gateway_task_queue=gateway.settings.gateway_task_queue,
            command=ChargerCommandInput(charge_box_id=cb, action=action, payload=payload),
        ),
        id=f"probe-{uuid.uuid4().hex}",
        task_queue=gateway.settings.temporal_task_queue,
    )
    return result.payload


async def _refused(client: Client, gateway: Gateway, cb: str, action: str, payload: Any) -> Any:
    with pytest.raises(WorkflowFailureError) as failure:
        await _probe(client, gateway, cb, action, payload)
    cause = failure.value.cause
    assert isinstance(cause, ActivityError) and isinstance(cause.cause, ApplicationError)
    return cause.cause


def _last(cp: Station201, action: str) -> dict[str, Any]:
    return [kw for name, kw in cp.received if name == action][-1]


async def test_commands_are_translated_for_a_2_0_1_connection(
    gateway: Gateway, session_factory: SessionFactory, temporal_client: Client
) -> None:
    cb = await seed_charger(session_factory)
    async with station(gateway, cb) as cp:
        await cp.call(call.Heartbeat())
        probe = temporal_client, gateway, cb
        assert await _probe(*probe, "Reset", {"type": "Hard"}) == {"status": "Accepted"}
        assert _last(cp, "Reset") == {"type": "Immediate"}
        await _probe(*probe, "Reset", {"type": "Soft"})
        assert _last(cp, "Reset") == {"type": "OnIdle"}
        assert await _probe(*probe, "UnlockConnector", {"connectorId": 2}) == {"status": "Unlocked"}
        assert _last(cp, "UnlockConnector") == {"evse_id": 2, "connector_id": 1}
        await _probe(*probe, "ChangeAvailability", {"connectorId": 0, "type": "Inoperative"})
        assert _last(cp, "ChangeAvailability") == {"operational_status": "Inoperative"}
        await _probe(*probe, "ChangeAvailability", {"connectorId": 1, "type": "Operative"})
        assert _last(cp, "ChangeAvailability") == {
            "operational_status": "Operative",
            "evse": {"id": 1},
        }
        trigger = {"requestedMessage": "DiagnosticsStatusNotification"}
        await _probe(*probe, "TriggerMessage", trigger)
        assert _last(cp, "TriggerMessage") == {"requested_message": "LogStatusNotification"}
        # 2.0.1-only operations pass through.
        status = await _probe(*probe, "GetTransactionStatus", {"transactionId": "TX-1"})
        assert status == {"messagesInQueue": False, "ongoingIndicator": True}
        assert await _probe(
            *probe, "GetBaseReport", {"requestId": 7, "reportBase": "FullInventory"}
        ) == {"status": "Accepted"}
        # Configuration keys become device-model variables, both ways.
        config = await _probe(*probe, "GetConfiguration", {"key": ["HeartbeatInterval"]})
        assert config == {
            "configurationKey": [{"key": "HeartbeatInterval", "readonly": False, "value": "300"}]
        }
        changed = await _probe(
            *probe, "ChangeConfiguration", {"key": "MeterValueSampleInterval", "value": "60"}
        )
        assert changed == {"status": "Accepted"}
        assert cp.variables[("SampledDataCtrlr", "TxUpdatedInterval")] == "60"
        values = await _probe(
            *probe,
            "GetVariables",
            {
                "getVariableData": [
                    {"component": {"name": "SampledDataCtrlr"}, "variable": {"name": "Nope"}}
                ]
            },
        )
        assert values["getVariableResult"][0]["attributeStatus"] == "UnknownVariable"
        # Not yet translated: a clear, final refusal (nothing sent).
        refused = await _refused(
            *probe,
            "ReserveNow",
            {
                "connectorId": 1,
                "expiryDate": "2030-01-01T00:00:00Z",
                "idTag": "X",
                "reservationId": 1,
            },
        )
        assert refused.type == "BadCommand" and refused.non_retryable
        assert "not yet supported on an OCPP 2.0.1" in str(refused.message)
        unknown_key = await _refused(*probe, "ChangeConfiguration", {"key": "Foo", "value": "1"})
        assert unknown_key.type == "BadCommand"
    assert not [name for name, _ in cp.received if name == "ReserveNow"]


async def test_a_2_0_1_only_action_on_a_1_6_connection_is_a_bad_command(
    gateway: Gateway, session_factory: SessionFactory, temporal_client: Client
) -> None:
    cb = await seed_charger(session_factory)
    async with charger_session(gateway, cb) as cp:
        await cp.call(call16.Heartbeat())
        refused = await _refused(
            temporal_client, gateway, cb, "GetTransactionStatus", {"transactionId": "X"}
        )
    assert refused.type == "BadCommand" and refused.non_retryable


async def test_a_2_0_1_only_call_error_code_is_a_clear_failure_not_a_retry(
    gateway: Gateway, session_factory: SessionFactory, temporal_client: Client
) -> None:
    cb = await seed_charger(session_factory)
    url = f"ws://127.0.0.1:{gateway.port}/ocpp/{cb}"
    async with connect(url, subprotocols=["ocpp2.0.1"]) as ws:  # type: ignore[list-item]
        boot = {"chargingStation": {"model": "M", "vendorName": "V"}, "reason": "PowerUp"}
        await ws.send(json.dumps([2, "b1", "BootNotification", boot]))
        assert json.loads(await ws.recv())[0] == 3

        async def answer_with_rpc_framework_error() -> None:
            frame = json.loads(await ws.recv())
            await ws.send(json.dumps([4, frame[1], "RpcFrameworkError", "cannot parse", {}]))

        answering = asyncio.create_task(answer_with_rpc_framework_error())
        refused = await _refused(temporal_client, gateway, cb, "Reset", {"type": "Soft"})
        await answering
    assert refused.type == "ChargerCallError" and refused.non_retryable
    assert "RpcFrameworkError" in str(refused.message)
    async with session_factory() as s:
        row = await s.scalar(select(ChargerOperation).where(ChargerOperation.charge_box_id == cb))
    assert row is not None and row.status == "failed"
    assert row.error is not None and "RpcFrameworkError" in row.error


async def test_remote_start_is_matched_by_remote_start_id_and_stopped_by_the_chargers_id(
    stack: Gateway,  # noqa: F811
    temporal_client: Client,
    session_factory: SessionFactory,
) -> None:
    cb = await seed_charger(session_factory)
    tag = await seed_card(session_factory)
    async with station(stack, cb) as cp:
        await cp.call(
            call.BootNotification(
                charging_station={"model": "M", "vendorName": "V"}, reason="PowerUp"
            )
        )
        workflow_id = f"session:{cb}:remote:{uuid.uuid4().hex[:8]}"
        handle = await temporal_client.start_workflow(
            ChargingSessionWorkflow.run,
            SessionInput(charge_box_id=cb, id_tag=tag, connector_id=1, origin="remote"),
            id=workflow_id,
            task_queue=stack.settings.temporal_task_queue,
        )
        await eventually(lambda: [n for n, _ in cp.received if n == "RequestStartTransaction"])
        request = _last(cp, "RequestStartTransaction")
        assert request["id_token"] == {"id_token": tag, "type": "Central"}
        assert request["evse_id"] == 1
        remote_start_id = request["remote_start_id"]
        base = datetime.now(UTC) - timedelta(minutes=10)
        # The station starts without echoing the token (AuthorizeRemoteStart false): only the
        # remoteStartId ties this transaction to the session that asked for it.
        await cp.call(
            tx_event(
                "Started",
                0,
                at_minutes(base, 0),
                "TX-REMOTE",
                trigger="RemoteStart",
                state="Charging",
                evse=True,
                remote_start_id=remote_start_id,
                meter=[energy(1_000, at_minutes(base, 0), context="Transaction.Begin")],
            )
        )
        async with session_factory() as s:
            tx = await s.scalar(
                select(Transaction).where(
                    Transaction.charge_box_id == cb, Transaction.ocpp_transaction_id == "TX-REMOTE"
                )
            )
        assert tx is not None and tx.workflow_id == workflow_id and tx.id_tag == tag

        async def charging() -> bool:
            status = await handle.query(ChargingSessionWorkflow.status)
            return status.state == "charging"

        await eventually(charging, timeout=30)
        answer = await handle.execute_update(
            ChargingSessionWorkflow.remote_stop, RemoteStopInput(requested_by="driver")
        )
        assert answer.accepted
        assert _last(cp, "RequestStopTransaction") == {"transaction_id": "TX-REMOTE"}
        await cp.call(
            tx_event(
                "Ended",
                1,
                at_minutes(base, 5),
                "TX-REMOTE",
                trigger="RemoteStop",
                stopped_reason="Remote",
                meter=[energy(3_200, at_minutes(base, 5), context="Transaction.End")],
            )
        )
        final = await handle.result()
    assert (final.state, final.transaction_id, final.energy_wh) == ("closed", tx.id, 2_200)
    assert final.end_reason == "Remote"
    async with session_factory() as s:
        rows = (
            await s.scalars(select(BillingEvent).where(BillingEvent.workflow_id == workflow_id))
        ).all()
    assert [(r.kind, r.energy_wh) for r in rows] == [("final", 2_200)]


def _report_item(component: str, variable: str, value: str, **extra: Any) -> dict[str, Any]:
    return {
        "component": {"name": component, **extra},
        "variable": {"name": variable},
        "variableAttribute": [{"type": "Actual", "value": value, "mutability": "ReadWrite"}],
        "variableCharacteristics": {"dataType": "string", "supportsMonitoring": False},
    }


async def test_get_base_report_stores_the_notify_report_as_the_device_model(
    gateway: Gateway, session_factory: SessionFactory, temporal_client: Client
) -> None:
    cb = await seed_charger(session_factory)
    async with station(gateway, cb) as cp:
        answer = await _probe(
            temporal_client,
            gateway,
            cb,
            "GetBaseReport",
            {"requestId": 42, "reportBase": "FullInventory"},
        )
        assert answer == {"status": "Accepted"}
        now = datetime.now(UTC).isoformat()
        await cp.call(
            call.NotifyReport(
                request_id=42,
                generated_at=now,
                seq_no=0,
                tbc=True,
                report_data=[
                    _report_item("OCPPCommCtrlr", "HeartbeatInterval", "300"),
                    _report_item("SecurityCtrlr", "BasicAuthPassword", "s3cret-s3cret-s3cret"),
                ],
            )
        )
        await cp.call(
            call.NotifyReport(
                request_id=42,
                generated_at=now,
                seq_no=1,
                report_data=[
                    _report_item(
                        "Connector", "ConnectorType", "cType2", evse={"id": 1, "connectorId": 1}
                    ),
                    _report_item("OCPPCommCtrlr", "HeartbeatInterval", "120"),
                ],
            )
        )
    async with session_factory() as s:
        rows = (
            await s.execute(
                select(
                    Ocpp201DeviceVariable.component,
                    Ocpp201DeviceVariable.evse_id,
                    Ocpp201DeviceVariable.variable,
                    Ocpp201DeviceVariable.value,
                )
                .where(Ocpp201DeviceVariable.charge_box_id == cb)
                .order_by(Ocpp201DeviceVariable.component, Ocpp201DeviceVariable.variable)
            )
        ).all()
    assert [tuple(r) for r in rows] == [
        ("Connector", 1, "ConnectorType", "cType2"),
        ("OCPPCommCtrlr", 0, "HeartbeatInterval", "120"),  # the newer part wins
        ("SecurityCtrlr", 0, "BasicAuthPassword", "***"),  # never stored in clear
    ]
