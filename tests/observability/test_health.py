"""The worker's health asks Temporal whether it polls: healthy while it does, 503 once its run
loop ends. A real worker on the dev server, served by the real listener."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from temporalio.client import Client
from temporalio.worker import Worker

from config.temporal import DATA_CONVERTER
from observability.http import ObservabilityServer
from observability.worker_health import WorkerHealth
from tests.helpers import eventually
from tests.observability.probe_workflow import ProbeWorkflow, probe


async def test_worker_health_follows_its_polling(temporal_address: str) -> None:
    client = await Client.connect(temporal_address, data_converter=DATA_CONVERTER)
    queue = f"health-{uuid.uuid4().hex[:8]}"
    health = WorkerHealth(client, queue, stale_s=120)
    server = ObservabilityServer("127.0.0.1", 0, health=health.check)
    await server.start()
    worker = Worker(client, task_queue=queue, workflows=[ProbeWorkflow], activities=[probe])
    try:
        async with httpx.AsyncClient(timeout=15) as http:
            url = f"http://127.0.0.1:{server.port}/healthz"
            # Not started: unhealthy.
            assert (await http.get(url)).status_code == 503
            health.task = asyncio.create_task(worker.run())

            async def polling() -> bool:
                response = await http.get(url)
                assert response.status_code == 200, response.text
                return bool(response.json()["worker"] == "running")

            await eventually(polling, timeout=60, interval=0.5)
            metrics = (await http.get(f"http://127.0.0.1:{server.port}/metrics")).text
            assert "polaris_worker_polling 1.0" in metrics
            # The run loop ends (shutdown, or a fatal error): unhealthy at once.
            await worker.shutdown()
            await health.task
            response = await http.get(url)
            assert response.status_code == 503
            assert response.json()["worker"] == "stopped"
    finally:
        if health.task is not None and not health.task.done():
            health.task.cancel()
        await server.stop()


async def test_a_worker_temporal_never_saw_is_unhealthy(temporal_address: str) -> None:
    """The run task is alive but nothing polls this queue (a hung poller): 503."""
    client = await Client.connect(temporal_address, data_converter=DATA_CONVERTER)
    health = WorkerHealth(client, f"silent-{uuid.uuid4().hex[:8]}", stale_s=120)
    health.task = asyncio.create_task(asyncio.Event().wait())
    try:
        ok, details = await health.check()
    finally:
        health.task.cancel()
    assert not ok
    assert details["worker"] == "running" and details["last_poll_age_s"] is None
