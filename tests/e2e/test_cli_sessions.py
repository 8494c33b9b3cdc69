"""Operators drive and read sessions from the command line: `polaris sessions start|stop|show`.

Real processes (gateway, worker, Temporal), a real `ocpp` charge point that obeys remote
commands, and the CLI run as a subprocess with the platform's environment.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from typing import Any

import pytest
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action, RemoteStartStopStatus

from activities.lago import LagoBilling
from db.engine import SessionFactory
from tests.e2e.conftest import (
    SUBPROTOCOL,
    Platform,
    billed,
    now_iso,
    seed_charger,
    seed_driver,
)
from tests.helpers import eventually

pytestmark = pytest.mark.timeout(300)


class ObedientCharger(ChargePoint):  # type: ignore[misc]
    """Accepts remote start/stop and remembers them; the test then acts as the charger would."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.starts: list[dict[str, Any]] = []
        self.stops: list[int] = []

    @on(Action.remote_start_transaction)
    def on_remote_start(self, id_tag: str, **kwargs: Any) -> call_result.RemoteStartTransaction:
        self.starts.append({"id_tag": id_tag, **kwargs})
        return call_result.RemoteStartTransaction(status=RemoteStartStopStatus.accepted)

    @on(Action.remote_stop_transaction)
    def on_remote_stop(self, transaction_id: int) -> call_result.RemoteStopTransaction:
        self.stops.append(transaction_id)
        return call_result.RemoteStopTransaction(status=RemoteStartStopStatus.accepted)


async def polaris(platform: Platform, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as a subprocess, off the event loop (the charger must keep answering meanwhile)."""
    env = {**os.environ, **platform.worker.env}
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_remote_start_and_stop_from_the_cli(
    platform: Platform,
    session_factory: SessionFactory,
    lago_billing: LagoBilling,
) -> None:
    import websockets

    charge_box_id = await seed_charger(session_factory)
    driver = await seed_driver(session_factory, lago_billing)
    async with websockets.connect(
        f"{platform.gateway_url}/{charge_box_id}", subprotocols=[SUBPROTOCOL]
    ) as ws:
        cp = ObedientCharger(charge_box_id, ws)
        reader = asyncio.create_task(cp.start())
        try:
            await cp.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
            started = await polaris(
                platform,
                "sessions",
                "start",
                "--charger",
                charge_box_id,
                "--id-tag",
                driver.id_tag,
                "--connector",
                "1",
                "--request-id",
                "cli-test",
            )
            assert started.returncode == 0, started.stdout + started.stderr
            workflow_id = started.stdout.strip().splitlines()[-1]
            assert workflow_id == f"session:{charge_box_id}:remote:cli-test"
            await eventually(lambda: cp.starts, timeout=60, message="RemoteStartTransaction")
            assert cp.starts[0]["id_tag"] == driver.id_tag

            # A retried request with the same id starts nothing new.
            again = await polaris(
                platform,
                "sessions",
                "start",
                "--charger",
                charge_box_id,
                "--id-tag",
                driver.id_tag,
                "--connector",
                "1",
                "--request-id",
                "cli-test",
            )
            assert again.returncode == 0 and "already requested" in again.stdout

            tx = await cp.call(
                call.StartTransaction(
                    connector_id=1, id_tag=driver.id_tag, meter_start=10_000, timestamp=now_iso()
                )
            )
            transaction_id = int(tx.transaction_id)

            async def charging() -> bool:
                result = await billed(session_factory, workflow_id)
                return result is not None and result.state == "charging"

            await eventually(charging, timeout=60, message="session charging")
            stopped = await polaris(platform, "sessions", "stop", workflow_id, "--reason", "test")
            assert stopped.returncode == 0, stopped.stdout + stopped.stderr
            assert cp.stops == [transaction_id]
            await cp.call(
                call.StopTransaction(
                    meter_stop=12_500,
                    timestamp=now_iso(),
                    transaction_id=transaction_id,
                    reason="Remote",
                )
            )
        finally:
            reader.cancel()

    async def closed() -> bool:
        result = await billed(session_factory, workflow_id)
        return result is not None and result.state == "closed"

    await eventually(closed, timeout=120, message="session closed")
    shown = await polaris(platform, "sessions", "show", workflow_id, "--json")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    story = json.loads(shown.stdout)
    assert story["state"] == "closed"
    assert story["energy_wh"] == 2_500
    assert story["transaction_id"] == transaction_id
    assert sum(e["energy_wh"] for e in story["billing_events"]) == 2_500
    assert story["workflow"]["status"] == "COMPLETED"
    listed = await polaris(platform, "sessions", "list", "--json", "--limit", "500")
    assert workflow_id in {row["workflow_id"] for row in json.loads(listed.stdout)}
