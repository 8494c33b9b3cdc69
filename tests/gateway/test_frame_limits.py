"""Poison frames against a live gateway: unsolicited answers, oversized frames, floods and deep
nesting. Each test performs the attack over a real WebSocket and shows it refused, then shows
the gateway still serving."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from temporalio.client import Client
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from config.settings import Settings
from db.engine import SessionFactory
from gateway.main import Gateway
from tests.gateway.conftest import seed_charger
from tests.gateway.session_stub import CommandProbe, CommandProbeInput
from workflows.messages import ChargerCommandInput

BOOT = {"chargePointVendor": "Acme", "chargePointModel": "X"}


@pytest.fixture
def gw_settings(gw_settings: Settings) -> Settings:
    # The floods below are about what each frame does, not about the rate limit (tested apart).
    return gw_settings.model_copy(update={"gateway_max_frames_per_s": 0.0})


async def _open(gateway: Gateway, charge_box_id: str) -> ClientConnection:
    return await connect(
        f"ws://127.0.0.1:{gateway.port}/ocpp/{charge_box_id}", subprotocols=["ocpp1.6"]
    )


async def _answer_commands(ws: ClientConnection) -> None:
    """A raw charger that answers GetConfiguration and ignores everything else it receives."""
    async for raw in ws:
        msg = json.loads(raw)
        if msg[0] == 2 and msg[2] == "GetConfiguration":
            key = {"key": "HeartbeatInterval", "readonly": False, "value": "300"}
            await ws.send(json.dumps([3, msg[1], {"configurationKey": [key]}]))


async def _heartbeat(ws: ClientConnection, unique_id: str) -> list[Any]:
    await ws.send(json.dumps([2, unique_id, "Heartbeat", {}]))
    answer: list[Any] = json.loads(await ws.recv())
    return answer


async def test_unsolicited_answers_are_dropped_and_commands_still_work(
    gateway: Gateway, session_factory: SessionFactory, temporal_client: Client
) -> None:
    cb = await seed_charger(session_factory)
    async with await _open(gateway, cb) as ws:
        # The attack: answers to calls the gateway never made. Before the fix each one was queued
        # for ever, and the next command recursed through the pile until RecursionError.
        for i in range(1500):
            if i % 2:
                await ws.send(json.dumps([3, f"forged-{i}", {"status": "Accepted"}]))
            else:
                await ws.send(json.dumps([4, f"forged-{i}", "GenericError", "", {}]))
        await ws.send(json.dumps([3, "no-payload"]))  # malformed answers are dropped too
        await ws.send(json.dumps([4, 17, "x"]))
        # Frames are handled in order, so once this is answered every forged one was seen.
        assert (await _heartbeat(ws, "hb-1"))[:2] == [3, "hb-1"]
        cp = gateway.registry.get(cb)
        assert cp is not None and cp._response_queue.qsize() == 0

        answering = asyncio.create_task(_answer_commands(ws))
        try:
            result = await temporal_client.execute_workflow(
                CommandProbe.run,
                CommandProbeInput(
                    charge_box_id=cb,
                    gateway_task_queue=gateway.settings.gateway_task_queue,
                    command=ChargerCommandInput(
                        charge_box_id=cb,
                        action="GetConfiguration",
                        payload={"key": ["HeartbeatInterval"]},
                    ),
                ),
                id=f"probe-{uuid.uuid4().hex}",
                task_queue=gateway.settings.temporal_task_queue,
            )
        finally:
            answering.cancel()
            await asyncio.gather(answering, return_exceptions=True)
        assert result.payload["configurationKey"][0]["value"] == "300"
