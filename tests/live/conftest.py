"""Live stream tests: real API processes (``polaris api``), the real auth service, a real SSE
client (httpx streaming) reading ``text/event-stream`` line by line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import (  # noqa: F401  (fixtures re-exported for this folder)
    charger_factory,
    lago_billing,
    lago_sandbox,
    platform,
    platform_env,
)
from tests.e2e.processes import ManagedProcess, polaris_process
from tests.fixtures.auth import AuthService
from tests.helpers import free_port


@dataclass
class ApiProcess:
    process: ManagedProcess
    url: str


def api_env(pg_url: str, temporal_address: str, auth: AuthService, tmp: Path) -> dict[str, str]:
    return {
        "POLARIS_ENV": "test",
        "POLARIS_DATA_DIR": str(tmp / "data"),
        "POLARIS_DATABASE_URL": pg_url,
        "POLARIS_TEMPORAL_ADDRESS": temporal_address,
        "POLARIS_AUTH_URL": auth.base_url,
        "POLARIS_AUTH_INTERNAL_URL": auth.internal_url,
        "POLARIS_AUTH_INTERNAL_TOKEN": auth.internal_tokens["api"],
        "POLARIS_AUTH_SECRET": secrets.token_urlsafe(32),
        "POLARIS_LAGO_WEBHOOK_SECRET": secrets.token_urlsafe(32),
        "POLARIS_LAGO_API_KEY": secrets.token_urlsafe(32),
        "POLARIS_LOG_LEVEL": "INFO",
        # Fast heartbeats so a test sees them; a short wait for a missing id.
        "POLARIS_STREAM_HEARTBEAT_S": "1",
        "POLARIS_STREAM_GAP_GRACE_S": "0.5",
    }


def start_api(name: str, env: dict[str, str], tmp: Path) -> ApiProcess:
    port = free_port()
    process = polaris_process(name, "api", tmp, {**env, "POLARIS_API_PORT": str(port)}, port=port)
    try:
        process.start()
    except TimeoutError:
        process.stop()
        raise AssertionError(f"{name} did not start:\n{process.output()[-3000:]}") from None
    return ApiProcess(process, f"http://127.0.0.1:{port}")


@pytest.fixture
def two_apis(
    tmp_path: Path, pg_url: str, temporal_address: str, auth_service: AuthService
) -> Iterator[tuple[ApiProcess, ApiProcess]]:
    tmp_path.chmod(0o755)
    env = api_env(pg_url, temporal_address, auth_service, tmp_path)
    started: list[ApiProcess] = []
    try:
        started.append(start_api("api-a", env, tmp_path))
        started.append(start_api("api-b", env, tmp_path))
        yield started[0], started[1]
    finally:
        for api in started:
            api.process.stop()


@dataclass
class Sse:
    id: str | None
    event: str
    data: dict[str, Any]


@dataclass
class SseClient:
    """A real SSE client: one streaming GET, parsed per the SSE format into events and
    heartbeat comments, in the background."""

    url: str
    headers: dict[str, str]
    events: list[Sse] = field(default_factory=list)
    comments: int = 0
    status: int | None = None
    ended: bool = False
    _task: asyncio.Task[None] | None = None

    async def _read(self) -> None:
        try:
            await self._consume()
        finally:
            self.ended = True  # the server closed the stream (cleanly or not), or we did

    async def _consume(self) -> None:
        async with (
            httpx.AsyncClient(timeout=httpx.Timeout(30.0, read=None)) as client,
            client.stream("GET", self.url, headers=self.headers) as response,
        ):
            self.status = response.status_code
            if response.status_code != 200:
                await response.aread()
                return
            fields: dict[str, str] = {}
            async for line in response.aiter_lines():
                if line == "":
                    if "data" in fields:
                        self.events.append(
                            Sse(
                                fields.get("id"),
                                fields.get("event", "message"),
                                json.loads(fields["data"]),
                            )
                        )
                    fields = {}
                elif line.startswith(":"):
                    self.comments += 1
                else:
                    name, _, value = line.partition(":")
                    fields[name] = value[1:] if value.startswith(" ") else value

    def start(self) -> None:
        self._task = asyncio.create_task(self._read())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    def of(self, keep: Callable[[Sse], bool]) -> list[Sse]:
        return [e for e in self.events if keep(e)]

    @property
    def last_id(self) -> str | None:
        return self.events[-1].id if self.events else None


@pytest.fixture
async def sse() -> AsyncIterator[Callable[..., SseClient]]:
    clients: list[SseClient] = []

    def open_stream(url: str, token: str, last_event_id: int | str | None = None) -> SseClient:
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        client = SseClient(url, headers)
        client.start()
        clients.append(client)
        return client

    yield open_stream
    for client in clients:
        await client.close()
