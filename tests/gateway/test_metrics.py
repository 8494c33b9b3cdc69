"""The gateway's metrics move where things happen (frames, refusals, commands), and its health
on the metrics port fails when PostgreSQL does.

In-process (the metrics are the process registry's): a real gateway, real ``ocpp`` clients over
real sockets, commands through a real workflow on the dev server.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
import uuid

import pytest
from ocpp.exceptions import PropertyConstraintViolationError
from ocpp.v16 import call
from prometheus_client import REGISTRY
from temporalio.client import Client, WorkflowFailureError
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from config.settings import Settings
from db.engine import SessionFactory
from gateway.main import Gateway
from tests.gateway.conftest import charger_session, seed_charger
from tests.gateway.session_stub import CommandProbe, CommandProbeInput
from tests.helpers import free_port
from workflows.messages import ChargerCommandInput


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


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


async def test_frames_are_counted_by_action_and_result(
    gateway: Gateway, session_factory: SessionFactory
) -> None:
    frames = "polaris_gateway_frames_total"
    before_ok = sample(frames, action="Heartbeat", result="ok")
    before_error = sample(frames, action="StatusNotification", result="call_error")
    before_rejected = sample(frames, action="unknown", result="rejected")
    before_journal = sample(
        "polaris_gateway_journal_write_seconds_count", action="StatusNotification"
    )
    cb = await seed_charger(session_factory)
    async with charger_session(gateway, cb) as cp:
        await cp.call(call.Heartbeat())
        await cp.call(
            call.StatusNotification(connector_id=1, error_code="NoError", status="Available")
        )
        # A connector id no column can hold: the handler refuses it with a CallError.
        with pytest.raises(PropertyConstraintViolationError):
            await cp.call(
                call.StatusNotification(
                    connector_id=2**40, error_code="NoError", status="Available"
                ),
                suppress=False,
            )
        await cp._connection.send('[2, "x", "Heartbeat", {')  # not JSON: rejected before routing
        await cp.call(call.Heartbeat())  # the connection lives on
    assert sample(frames, action="Heartbeat", result="ok") >= before_ok + 2
    assert sample(frames, action="StatusNotification", result="call_error") == before_error + 1
    assert sample(frames, action="unknown", result="rejected") == before_rejected + 1
    assert (
        sample("polaris_gateway_journal_write_seconds_count", action="StatusNotification")
        > before_journal
    )


async def test_handshake_failures_are_counted_by_reason(
    gateway: Gateway, session_factory: SessionFactory
) -> None:
    failures = "polaris_gateway_handshake_failures_total"
    before = sample(failures, reason="unknown_charger")
    with pytest.raises(InvalidStatus):
        async with connect(
            f"ws://127.0.0.1:{gateway.port}/ocpp/NOBODY-{uuid.uuid4().hex[:6]}",
            subprotocols=["ocpp1.6"],
        ):
            pass
    assert sample(failures, reason="unknown_charger") == before + 1


async def test_command_round_trips_are_measured_by_action_and_outcome(
    gateway: Gateway, session_factory: SessionFactory, temporal_client: Client
) -> None:
    seconds = "polaris_gateway_command_seconds_count"
    ok_before = sample(seconds, action="GetConfiguration", outcome="ok")
    refused_before = sample(seconds, action="UnlockConnector", outcome="ChargerCallError")
    cb = await seed_charger(session_factory)
    async with charger_session(gateway, cb):
        await _probe(
            temporal_client,
            gateway,
            ChargerCommandInput(charge_box_id=cb, action="GetConfiguration", payload={}),
        )
        with pytest.raises(WorkflowFailureError):
            await _probe(
                temporal_client,
                gateway,
                ChargerCommandInput(
                    charge_box_id=cb, action="UnlockConnector", payload={"connectorId": 1}
                ),
            )
    assert sample(seconds, action="GetConfiguration", outcome="ok") == ok_before + 1
    assert (
        sample(seconds, action="UnlockConnector", outcome="ChargerCallError") == refused_before + 1
    )


async def test_health_fails_without_the_database(gw_settings: Settings) -> None:
    settings = gw_settings.model_copy(
        update={"database_url": f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"}
    )
    gateway = Gateway(settings, relay_poll_interval_s=0.5)
    await gateway.start()
    try:

        def fetch() -> tuple[int, dict[str, object]]:
            url = f"http://127.0.0.1:{gateway.metrics_port}/healthz"
            try:
                with urllib.request.urlopen(url, timeout=10) as r:
                    return r.status, json.loads(r.read())
            except urllib.error.HTTPError as exc:
                return exc.code, json.loads(exc.read())

        status, body = await asyncio.to_thread(fetch)
    finally:
        await gateway.stop()
    assert status == 503
    assert body["status"] == "unhealthy" and body["database"] == "down"
