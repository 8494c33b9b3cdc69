"""The firmware stack for real: the API (uvicorn, the real app) that serves files, the gateway,
a Temporal worker with every workflow, and charge points on the real ``ocpp`` library that
download over HTTP, report statuses and reboot with the new version."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action
from sqlalchemy import select
from temporalio.client import Client
from temporalio.worker import Worker
from websockets.asyncio.client import connect

from api.app import create_app
from config.settings import Settings
from db.engine import SessionFactory
from db.firmware_models import FirmwareUpdate
from db.models import Charger
from gateway.main import Gateway
from services.actor import Actor
from services.context import ServiceContext
from tests.gateway.conftest import seed_charger, uid
from tests.helpers import eventually, free_port
from worker import build_worker

ADMIN = Actor(id="cli:test", role="admin", source="test")
IMAGE = b"POLARIS-FIRMWARE-IMAGE\x00" * 2000


class WorkerRunner:
    """The platform worker (worker.py's build_worker), stoppable and startable again."""

    def __init__(self, client: Client, settings: Settings, sf: SessionFactory, queue: str) -> None:
        self._args = (client, settings, sf)
        self._queue = queue
        self._worker: Worker | None = None
        self._task: asyncio.Task[None] | None = None
        self.starts = 0

    def start(self) -> None:
        client, settings, sf = self._args
        self._worker = build_worker(client, settings, sf, task_queue=self._queue)
        self._task = asyncio.create_task(self._worker.run())
        self.starts += 1

    async def stop(self) -> None:
        if self._worker is not None and self._task is not None:
            await self._worker.shutdown()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._worker = self._task = None


@dataclass
class Stack:
    settings: Settings
    gateway: Gateway
    ctx: ServiceContext
    worker: WorkerRunner
    api_url: str
    sf: SessionFactory
    chargers: list[SimCharger] = field(default_factory=list)

    def charger(self, charge_box_id: str, **behaviour: Any) -> SimCharger:
        sim = SimCharger(f"ws://127.0.0.1:{self.gateway.port}/ocpp/{charge_box_id}", charge_box_id)
        for key, value in behaviour.items():
            setattr(sim, key, value)
        self.chargers.append(sim)
        return sim


@pytest.fixture
async def stack(
    base_settings: Settings,
    session_factory: SessionFactory,
    temporal_client: Client,
    task_queue: str,
    tmp_path: Path,
) -> AsyncIterator[Stack]:
    api_port = free_port()
    settings = base_settings.model_copy(
        update={
            "gateway_port": 0,
            "gateway_instance": uid("gw-").lower(),
            "temporal_task_queue": task_queue,
            "files_dir": tmp_path / "files",
            "public_base_url": f"http://127.0.0.1:{api_port}",
            "api_port": api_port,
        }
    )
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=api_port, log_level="warning")
    )
    server_task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started, message="the API listening")
    gateway = Gateway(settings, relay_poll_interval_s=0.5)
    await gateway.start()
    await asyncio.wait_for(gateway.link.wait(), 30)
    runner = WorkerRunner(temporal_client, settings, session_factory, task_queue)
    runner.start()

    async def temporal() -> Client:
        return temporal_client

    stack = Stack(
        settings=settings,
        gateway=gateway,
        ctx=ServiceContext(settings=settings, sessions=session_factory, temporal=temporal),
        worker=runner,
        api_url=f"http://127.0.0.1:{api_port}",
        sf=session_factory,
    )
    try:
        yield stack
    finally:
        for sim in stack.chargers:
            await sim.disconnect()
        await runner.stop()
        await gateway.stop()
        server.should_exit = True
        await server_task


async def image_chunks(data: bytes = IMAGE) -> AsyncIterator[bytes]:
    for i in range(0, len(data), 10000):
        yield data[i : i + 10000]


class FirmwareChargePoint(ChargePoint):  # type: ignore[misc]
    """Answers UpdateFirmware and GetDiagnostics, then does the work in the background (a call
    to the central system from inside a handler would wait on itself)."""

    sim: SimCharger

    @on(Action.update_firmware)
    async def on_update_firmware(self, location: str, retrieve_date: str, **kw: Any) -> Any:
        self.sim.update_requests.append({"location": location, "retrieveDate": retrieve_date})
        self.sim.spawn(self.sim.run_update(location))
        return call_result.UpdateFirmware()

    @on(Action.get_diagnostics)
    async def on_get_diagnostics(self, location: str, **kw: Any) -> Any:
        name = f"diag-{self.sim.charge_box_id}.log"
        self.sim.diagnostics_requests.append(location)
        self.sim.spawn(self.sim.run_upload(location, name))
        return call_result.GetDiagnostics(file_name=name)


class SimCharger:
    """``behaviour``: ok | download_failed | install_failed | silent. ``hold``: when set, the
    charger stops after Installing until the event is set (a test's checkpoint)."""

    def __init__(self, url: str, charge_box_id: str) -> None:
        self.url = url
        self.charge_box_id = charge_box_id
        self.version = "1.0.0"
        self.new_version = "2.0.0"
        self.behaviour = "ok"
        self.hold: asyncio.Event | None = None
        self.upload_method = "PUT"
        self.update_requests: list[dict[str, str]] = []
        self.diagnostics_requests: list[str] = []
        self.statuses: list[str] = []
        self.downloaded: bytes | None = None
        self.upload_answer: int | None = None
        self.boots = 0
        self._ws: Any = None
        self._cp: FirmwareChargePoint | None = None
        self._listener: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def connect(self) -> None:
        self._ws = await connect(self.url, subprotocols=["ocpp1.6"])  # type: ignore[list-item]
        cp = FirmwareChargePoint(self.charge_box_id, self._ws, response_timeout=30)
        cp.sim = self
        self._cp = cp
        self._listener = asyncio.create_task(cp.start())
        await cp.call(
            call.BootNotification(
                charge_point_vendor="Polaris",
                charge_point_model="FW",
                firmware_version=self.version,
            ),
            suppress=False,
        )
        self.boots += 1

    async def _close_socket(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        self._ws = self._cp = self._listener = None

    async def disconnect(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._close_socket()

    async def status(self, status: str) -> None:
        assert self._cp is not None
        self.statuses.append(status)
        await self._cp.call(call.FirmwareStatusNotification(status=status), suppress=False)

    async def run_update(self, location: str) -> None:
        if self.behaviour == "silent":
            return
        await self.status("Downloading")
        async with httpx.AsyncClient(timeout=30) as http:
            answer = await http.get(location)
        if self.behaviour == "download_failed" or answer.status_code != 200:
            await self.status("DownloadFailed")
            return
        self.downloaded = answer.content
        await self.status("Downloaded")
        await self.status("Installing")
        if self.hold is not None:
            await self.hold.wait()
        if self.behaviour == "install_failed":
            await self.status("InstallationFailed")
            return
        await self.status("Installed")
        # The new firmware boots: a new connection, the new version in BootNotification.
        self.version = self.new_version
        await self._close_socket()
        await self.connect()

    async def run_upload(self, location: str, name: str) -> None:
        assert self._cp is not None
        await self._cp.call(call.DiagnosticsStatusNotification(status="Uploading"), suppress=False)
        content = f"diagnostics of {self.charge_box_id}\n".encode() * 100
        async with httpx.AsyncClient(timeout=30) as http:
            if self.upload_method == "PUT":
                answer = await http.put(f"{location}/{name}", content=content)
            else:
                answer = await http.post(location, files={"file": (name, content)})
        self.upload_answer = answer.status_code
        status = "Uploaded" if answer.status_code == 201 else "UploadFailed"
        await self._cp.call(call.DiagnosticsStatusNotification(status=status), suppress=False)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def seed_chargers(sf: SessionFactory, n: int) -> list[str]:
    return [await seed_charger(sf) for _ in range(n)]


async def charger_row(sf: SessionFactory, charge_box_id: str) -> Charger:
    async with sf() as db:
        row = await db.get(Charger, charge_box_id)
    assert row is not None
    return row


async def updates_of(sf: SessionFactory, charge_box_id: str) -> list[FirmwareUpdate]:
    async with sf() as db:
        return list(
            (
                await db.scalars(
                    select(FirmwareUpdate).where(FirmwareUpdate.charge_box_id == charge_box_id)
                )
            ).all()
        )
