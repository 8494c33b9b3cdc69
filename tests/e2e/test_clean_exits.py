"""Every ``polaris`` command that uses the Temporal client exits with its own status, every time.

The Temporal SDK's Rust runtime keeps threads that can take the GIL while CPython finalizes; a
short-lived process that used a client then aborts after its work is done ("Fatal Python error:
PyGILState_Release", exit -6, sometimes a segmentation fault) in roughly one run out of five on
this machine (temporalio/sdk-python#300). ``cli/main.py``'s ``main`` leaves without interpreter
teardown; these tests run each command that connects a client several times as a real process
(``python -m cli.main``, the console script's code path) and check every exit code.

The commands that reach Temporal from the CLI (each through ``cli/service_context.py`` or
``config/temporal.connect``): ``sessions start|stop|close|show|timeline``, ``chargers op``,
``local-list sync``, ``diagnostics request``, ``firmware update`` and ``firmware campaign
start|status|halt``, ``reservations cancel``, ``cards`` blocking, ``webhooks`` deliveries and
``sites`` load limits — all leave through the same ``main``. The ones below cover both ways a
command gets its client (connected directly, or on first use through the service context) and
both outcomes (success and a refusal), plus the long-running ``gateway`` and ``worker`` stopped
by SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import pytest
import websockets
from ocpp.v16 import call

from activities.lago import LagoBilling
from db.engine import SessionFactory
from tests.e2e.conftest import (
    SUBPROTOCOL,
    AnsweringChargePoint,
    Platform,
    billed,
    now_iso,
    seed_charger,
    seed_driver,
    workflow_of,
)
from tests.e2e.processes import polaris_process
from tests.helpers import eventually, free_port

pytestmark = pytest.mark.timeout(900)

# Each command runs this many times: without the fix, one run in five to ten aborted (measured:
# a bare client 14 of 40, `sessions stop` through `run()` 3 of 20), so 8 commands x 3 runs
# catch a regression almost surely.
REPEAT = 3


def _run(platform: Platform, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        env={**os.environ, **platform.env},
        capture_output=True,
        text=True,
        timeout=180,
    )


async def _repeat(platform: Platform, expected: int, *args: str) -> None:
    """Run ``polaris args`` REPEAT times (off the loop: the charger keeps answering)."""
    for attempt in range(REPEAT):
        done = await asyncio.to_thread(_run, platform, *args)
        where = f"polaris {' '.join(args)} (run {attempt + 1} of {REPEAT})"
        assert "Fatal Python error" not in done.stderr, f"{where}\n{done.stderr}"
        assert done.returncode == expected, (
            f"{where}: exit {done.returncode}, expected {expected}\n{done.stdout}\n{done.stderr}"
        )


async def test_cli_commands_using_temporal_exit_with_their_own_status(
    platform: Platform, session_factory: SessionFactory, lago_billing: LagoBilling
) -> None:
    charge_box_id = await seed_charger(session_factory)
    driver = await seed_driver(session_factory, lago_billing)
    async with websockets.connect(
        f"{platform.gateway_url}/{charge_box_id}", subprotocols=[SUBPROTOCOL]
    ) as ws:
        cp = AnsweringChargePoint(charge_box_id, ws)
        reader = asyncio.create_task(cp.start())
        try:
            await cp.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
            tx = await cp.call(
                call.StartTransaction(
                    connector_id=1, id_tag=driver.id_tag, meter_start=0, timestamp=now_iso()
                )
            )
            workflow_id = await workflow_of(session_factory, int(tx.transaction_id))

            async def charging() -> bool:
                row = await billed(session_factory, workflow_id)
                return row is not None and row.state == "charging"

            await eventually(charging, timeout=120, message="session charging")

            # A client connected directly (config/temporal.connect).
            await _repeat(platform, 0, "sessions", "stop", workflow_id, "--reason", "exit test")
            await _repeat(platform, 1, "sessions", "stop", "session:no-such-workflow")
            await _repeat(
                platform, 1, "sessions", "close", "session:no-such-workflow", "--reason", "t"
            )
            await _repeat(
                platform,
                0,
                "sessions",
                "start",
                "--charger",
                charge_box_id,
                "--id-tag",
                driver.id_tag,
                "--connector",
                "2",
                "--request-id",
                "exit-test",
                "--wait-s",
                "0",
            )
            await _repeat(platform, 0, "sessions", "show", workflow_id)
            # A client connected on first use (cli/service_context.py).
            await _repeat(platform, 0, "sessions", "timeline", workflow_id)
            await _repeat(platform, 0, "chargers", "op", charge_box_id, "GetConfiguration")
            await _repeat(platform, 0, "local-list", "sync", charge_box_id, "--wait-s", "0")
        finally:
            reader.cancel()


async def test_gateway_and_worker_exit_zero_on_sigterm(platform: Platform) -> None:
    """The long-running processes leave through the same path: SIGTERM → graceful stop → 0."""
    for attempt in range(2):
        env = {
            **platform.env,
            "POLARIS_GATEWAY_INSTANCE": f"exit-{attempt}",
            "POLARIS_GATEWAY_PORT": str(free_port()),
            "POLARIS_GATEWAY_METRICS_PORT": str(free_port()),
            "POLARIS_WORKER_METRICS_PORT": str(free_port()),
        }
        tmp = platform.worker.log_dir
        gateway = polaris_process(
            f"exit-gateway-{attempt}", "gateway", tmp, env, port=int(env["POLARIS_GATEWAY_PORT"])
        )
        worker = polaris_process(
            f"exit-worker-{attempt}",
            "worker",
            tmp,
            env,
            port=int(env["POLARIS_WORKER_METRICS_PORT"]),  # served once it polls
        )
        gateway.start()
        worker.start()
        for proc in (gateway, worker):
            code = proc.kill(signal.SIGTERM, timeout=60)
            assert code == 0, f"{proc.name} exited {code}\n{proc.output()[-3000:]}"
            assert "Fatal Python error" not in proc.output()
