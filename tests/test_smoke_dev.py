"""Smoke test of the README's first command: ``polaris dev`` runs the whole platform.

Starts it as a subprocess in an empty directory (free ports, data under ``./.polaris``), waits
until ``/api/health`` reports every dependency ``ok``, seeds the demo from a second process with
no variables (it finds the stack through ``.polaris/runtime.json``), connects a real ``ocpp`` 1.6
charge point to ``/ocpp/DEMO-CP-1`` and gets its BootNotification ``Accepted``, stops with
SIGTERM and checks nothing is left running. A second start finds the first one's data.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
import websockets
from ocpp.v16 import ChargePoint, call
from ocpp.v16.enums import RegistrationStatus

from tests.helpers import eventually, free_port

pytestmark = pytest.mark.timeout(420)


@dataclass
class DevStack:
    proc: subprocess.Popen[bytes]
    cwd: Path
    env: dict[str, str]
    api: str
    gateway: str
    log: Path

    def descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _ports_env() -> dict[str, str]:
    return {
        "POLARIS_EMBEDDED_PG_PORT": str(free_port()),
        "POLARIS_EMBEDDED_TEMPORAL_PORT": str(free_port()),
        "POLARIS_EMBEDDED_TEMPORAL_UI_PORT": str(free_port()),
        "POLARIS_AUTH_PORT": str(free_port()),
        "POLARIS_AUTH_INTERNAL_PORT": str(free_port()),
        "POLARIS_SANDBOX_PORT": str(free_port()),
        "POLARIS_API_PORT": str(free_port()),
        "POLARIS_GATEWAY_PORT": str(free_port()),
    }


def _clean_env() -> dict[str, str]:
    # The child must find everything by itself: no POLARIS_ URL from the test session leaks in.
    return {k: v for k, v in os.environ.items() if not k.startswith("POLARIS_")}


def _start(cwd: Path, ports: dict[str, str], log_name: str) -> DevStack:
    env = {**_clean_env(), **ports}
    log = cwd / log_name
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "dev"],
        cwd=cwd,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    return DevStack(
        proc=proc,
        cwd=cwd,
        env=env,
        api=f"http://127.0.0.1:{ports['POLARIS_API_PORT']}",
        gateway=f"ws://127.0.0.1:{ports['POLARIS_GATEWAY_PORT']}",
        log=log,
    )


def _stop(stack: DevStack) -> list[psutil.Process]:
    children = stack.descendants()
    stack.proc.send_signal(signal.SIGTERM)
    try:
        stack.proc.wait(60)
    except subprocess.TimeoutExpired:
        stack.proc.kill()
        tail = stack.output()[-4000:]
        raise AssertionError(f"polaris dev did not stop in 60 s:\n{tail}") from None
    return children


async def _wait_healthy(stack: DevStack) -> dict[str, object]:
    async with httpx.AsyncClient(timeout=5.0) as client:

        async def healthy() -> dict[str, object] | None:
            assert stack.proc.poll() is None, "polaris dev exited:\n" + stack.output()[-4000:]
            try:
                response = await client.get(f"{stack.api}/api/health")
            except httpx.HTTPError:
                return None
            body: dict[str, object] = response.json()
            return body if body.get("status") == "ok" else None

        return await eventually(healthy, timeout=240, interval=0.5, message="/api/health ok")


async def _boot(gateway: str, charge_box_id: str) -> RegistrationStatus:
    async with websockets.connect(
        f"{gateway}/ocpp/{charge_box_id}", subprotocols=[websockets.Subprotocol("ocpp1.6")]
    ) as ws:
        cp = ChargePoint(charge_box_id, ws)
        listener = asyncio.create_task(cp.start())
        try:
            result = await cp.call(
                call.BootNotification(charge_point_vendor="Polaris", charge_point_model="Smoke")
            )
        finally:
            listener.cancel()
        return RegistrationStatus(result.status)


def _seed(stack: DevStack) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "seed", "demo"],
        cwd=stack.cwd,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    tmp_path.chmod(0o755)
    yield tmp_path


async def test_polaris_dev_runs_everything_and_leaves_nothing_behind(workdir: Path) -> None:
    ports = _ports_env()
    stack = _start(workdir, ports, "dev-1.log")
    try:
        health = await _wait_healthy(stack)
        deps = health["dependencies"]
        assert isinstance(deps, dict)
        assert {k: v["status"] for k, v in deps.items()} == {
            "database": "ok",
            "temporal": "ok",
            "auth": "ok",
            "billing": "ok",
        }
        first_seed = _seed(stack)
        assert "DEMO-CP-1" in first_seed
        assert "password:" in first_seed  # generated and shown once
        assert "Lago sandbox: customer" in first_seed  # the demo driver can be billed
        assert await _boot(stack.gateway, "DEMO-CP-1") == RegistrationStatus.accepted
    finally:
        children = _stop(stack)
    assert stack.proc.returncode == 0, stack.output()[-4000:]
    assert children, "polaris dev should have started child processes"
    await eventually(
        lambda: not [p for p in children if p.is_running() and p.status() != "zombie"],
        timeout=30,
        message="every child process to exit",
    )
    assert not (workdir / ".polaris" / "runtime.json").exists()
    pgdata = str((workdir / ".polaris" / "pg").resolve())
    leftover_pg = [
        p
        for p in psutil.process_iter(["name", "cmdline"])
        if p.info["name"] == "postgres" and pgdata in " ".join(p.info["cmdline"] or [])
    ]
    assert not leftover_pg, "embedded PostgreSQL still running after stop"

    # A second start finds the data of the first: the seed sees the admin it created.
    stack = _start(workdir, ports, "dev-2.log")
    try:
        await _wait_healthy(stack)
        second_seed = _seed(stack)
        assert "already existed" in second_seed
    finally:
        _stop(stack)
    assert stack.proc.returncode == 0, stack.output()[-4000:]
