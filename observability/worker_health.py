"""Is this worker polling? Asked of Temporal itself, not assumed from the process being alive.

Healthy means: the worker's run task has not ended, and the task queue's description lists a
poller with this client's identity whose last poll is more recent than ``stale_s`` (a long poll
lasts up to a minute, so the default staleness is two). A worker that lost Temporal, whose run
task died, or whose pollers stopped fails the check and the orchestrator restarts it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from observability.metrics import WORKER_POLLING

DESCRIBE_TIMEOUT_S = 5.0


class WorkerHealth:
    def __init__(self, client: Client, task_queue: str, *, stale_s: float = 120.0) -> None:
        self._client = client
        self._task_queue = task_queue
        self._stale_s = stale_s
        self.task: asyncio.Task[Any] | None = None

    async def last_poll_age_s(self) -> float | None:
        """Seconds since Temporal last saw this worker poll its workflow task queue."""
        response = await asyncio.wait_for(
            self._client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace=self._client.namespace,
                    task_queue=TaskQueue(name=self._task_queue),
                    task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
                )
            ),
            DESCRIBE_TIMEOUT_S,
        )
        mine = [p for p in response.pollers if p.identity == self._client.identity]
        if not mine:
            return None
        last = max(p.last_access_time.ToSeconds() + p.last_access_time.nanos / 1e9 for p in mine)
        return max(0.0, time.time() - last)

    async def check(self) -> tuple[bool, dict[str, object]]:
        running = self.task is not None and not self.task.done()
        age: float | None = None
        error: str | None = None
        if running:
            try:
                age = await self.last_poll_age_s()
            except Exception as exc:
                error = type(exc).__name__
        polling = running and age is not None and age <= self._stale_s
        WORKER_POLLING.set(1 if polling else 0)
        details: dict[str, object] = {
            "status": "ok" if polling else "unhealthy",
            "task_queue": self._task_queue,
            "worker": "running" if running else "stopped",
            "last_poll_age_s": None if age is None else round(age, 1),
        }
        if error:
            details["temporal"] = "unreachable"
        return polling, details
