"""Poison frames against a live gateway: unsolicited answers, oversized frames, floods and deep
nesting. Each test performs the attack over a real WebSocket and shows it refused, then shows
the gateway still serving."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import Any

import pytest
from ocpp.v16 import call
from temporalio.client import Client
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from config.settings import Settings
from db.engine import SessionFactory
from gateway.frame_guard import FLOOD_CLOSE_REASON
from gateway.frame_limits import FrameRateLimiter
from gateway.main import Gateway
from tests.gateway.conftest import charger_session, seed_card, seed_charger
from tests.gateway.session_stub import CommandProbe, CommandProbeInput
from tests.helpers import ocpp_ts
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
        await ws.send('[3, "deep", ' + "[" * 3000 + "]" * 3000 + "]")
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


async def test_oversized_frame_closes_with_1009(
    gateway: Gateway, session_factory: SessionFactory
) -> None:
    limit = gateway.settings.gateway_max_frame_bytes
    assert limit == 64 * 1024  # the default
    cb = await seed_charger(session_factory)
    async with await _open(gateway, cb) as ws:
        # Just under the limit is still a frame, and gets its CallError.
        padded = {**BOOT, "x": "A" * (limit - 200)}
        await ws.send(json.dumps([2, "big-ok", "BootNotification", padded]))
        answer = json.loads(await ws.recv())
        assert answer[:3] == [4, "big-ok", "FormationViolation"]
        await ws.send(json.dumps([2, "too-big", "BootNotification", {**padded, "y": "B" * 400}]))
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    async with await _open(gateway, cb) as ws:  # the gateway carries on
        assert (await _heartbeat(ws, "after"))[:2] == [3, "after"]


async def test_frame_flood_is_throttled_then_closed_with_1008(
    gw_settings: Settings, session_factory: SessionFactory
) -> None:
    rate_per_s, burst = 10.0, 5
    settings = gw_settings.model_copy(
        update={
            "gateway_max_frames_per_s": rate_per_s,
            "gateway_frame_burst": burst,
            "gateway_frame_flood_close_s": 1.0,
        }
    )
    cb = await seed_charger(session_factory)
    async with Gateway(settings) as gw, await _open(gw, cb) as ws:
        began = time.monotonic()

        async def flood() -> None:
            for i in range(5000):
                await ws.send(json.dumps([2, f"f{i}", "Heartbeat", {}]))

        sending = asyncio.create_task(flood())
        answered = 0
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await ws.recv()
                answered += 1
        elapsed_s = time.monotonic() - began
        await asyncio.gather(sending, return_exceptions=True)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1008 and closed.value.rcvd.reason == FLOOD_CLOSE_REASON
        # Throttled, not just closed: never more answers than the bucket allows. (An upper bound
        # measured around the whole exchange, so a slow machine only makes it looser.)
        assert answered <= burst + rate_per_s * elapsed_s + 1
        assert answered < 5000
        async with await _open(gw, cb) as fresh:  # the gateway and the charger's next try live
            assert (await _heartbeat(fresh, "after"))[:2] == [3, "after"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rate_limiter_throttles_then_closes_and_forgives_a_pause() -> None:
    clock = FakeClock()
    bucket = FrameRateLimiter(rate_per_s=2.0, burst=3, flood_close_s=5.0, clock=clock)
    assert [bucket.admit() for _ in range(3)] == [0.0, 0.0, 0.0]  # the burst
    # A flood: the next frame is always already there when the caller is done waiting.
    admitted, wait_s = 3, bucket.admit()
    while wait_s is not None:
        assert wait_s == pytest.approx(0.5)  # one frame per 1/rate
        admitted += 1
        clock.now += wait_s
        wait_s = bucket.admit()
    # Closed once held back for flood_close_s without a pause: 5 s at 2/s after the burst.
    assert admitted == 3 + 10
    calm = FrameRateLimiter(rate_per_s=2.0, burst=3, flood_close_s=5.0, clock=clock)
    for _ in range(20):  # a charger that keeps to the rate is never held back
        assert calm.admit() == 0.0
        clock.now += 0.5
    unlimited = FrameRateLimiter(rate_per_s=0.0, burst=1, flood_close_s=1.0, clock=clock)
    assert all(unlimited.admit() == 0.0 for _ in range(1000))


async def test_id_tags_never_reach_the_logs(
    gateway: Gateway,
    session_factory: SessionFactory,
    temporal_client: Client,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="ocpp")  # even with the library's frame logging on
    cb = await seed_charger(session_factory)
    id_tag = await seed_card(session_factory)
    async with charger_session(gateway, cb) as cp:
        assert (await cp.call(call.Authorize(id_tag=id_tag))).id_tag_info["status"] == "Accepted"
        start = await cp.call(
            call.StartTransaction(
                connector_id=1, id_tag=id_tag, meter_start=0, timestamp=ocpp_ts(-60)
            )
        )
        # A rejected frame is logged (DEBUG, and WARNING now and then) with its payload.
        bad = call.StartTransaction(
            connector_id=1, id_tag=id_tag, meter_start=0, timestamp="yesterday"
        )
        await cp.call(bad, suppress=True, skip_schema_validation=True)
        # A command carrying the idTag, logged by the library as it is sent.
        result = await temporal_client.execute_workflow(
            CommandProbe.run,
            CommandProbeInput(
                charge_box_id=cb,
                gateway_task_queue=gateway.settings.gateway_task_queue,
                command=ChargerCommandInput(
                    charge_box_id=cb,
                    action="RemoteStartTransaction",
                    payload={"idTag": id_tag, "connectorId": 1},
                ),
            ),
            id=f"probe-{uuid.uuid4().hex}",
            task_queue=gateway.settings.temporal_task_queue,
        )
        assert result.payload == {"status": "Accepted"}
        await cp.call(
            call.StopTransaction(
                meter_stop=1000,
                timestamp=ocpp_ts(),
                transaction_id=start.transaction_id,
                id_tag=id_tag,
            )
        )
    fingerprint = gateway.ctx.tags.fingerprint(id_tag)
    assert fingerprint in caplog.text  # the lines are there, with the fingerprint
    assert id_tag not in caplog.text
