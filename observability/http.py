"""A small HTTP listener for ``/metrics`` and ``/healthz``, on a port of its own.

Every process runs one (the gateway's OCPP port and the API's port are public; this one is for
Prometheus and the orchestrator's health probe). It is plain asyncio: two GET routes, one request
per connection, no keep-alive, so it needs no web framework and shares the process's event loop.

``/healthz`` answers 200 with the check's JSON when the process is healthy and 503 when not.
``/metrics`` first runs the refresh hooks (gauges read from PostgreSQL, each with a timeout, a
failed hook is logged and the last values stay), then renders the default registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from http import HTTPStatus

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

log = logging.getLogger(__name__)

HealthCheck = Callable[[], Awaitable[tuple[bool, dict[str, object]]]]
Refresh = Callable[[], Awaitable[None]]
REFRESH_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 5.0


class ObservabilityServer:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        health: HealthCheck,
        refresh: Sequence[Refresh] = (),
    ) -> None:
        self._host = host
        self._port = port
        self._health = health
        self._refresh = list(refresh)
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self._host, self._port)
        log.info("metrics and health on http://%s:%s/metrics", self._host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                request_line = await reader.readline()
                while (await reader.readline()).strip():
                    pass  # headers: nothing here needs them
            parts = request_line.decode("latin-1").split()
            method, path = (parts[0], parts[1].split("?", 1)[0]) if len(parts) >= 2 else ("", "")
            status, content_type, body = await self._answer(method, path)
            head = (
                f"HTTP/1.1 {status.value} {status.phrase}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode("latin-1") + (body if method != "HEAD" else b""))
            await writer.drain()
        except (TimeoutError, ConnectionError, UnicodeError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, method: str, path: str) -> tuple[HTTPStatus, str, bytes]:
        if method not in ("GET", "HEAD"):
            return HTTPStatus.METHOD_NOT_ALLOWED, "text/plain", b"GET only\n"
        if path == "/metrics":
            await self.refresh()
            return HTTPStatus.OK, CONTENT_TYPE_LATEST, generate_latest(REGISTRY)
        if path == "/healthz":
            try:
                ok, details = await self._health()
            except Exception as exc:  # a check that crashes is a failed check
                log.warning("health check failed: %r", exc)
                ok, details = False, {"status": "unhealthy"}
            status = HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE
            return status, "application/json", (json.dumps(details) + "\n").encode()
        return HTTPStatus.NOT_FOUND, "text/plain", b"/metrics or /healthz\n"

    async def refresh(self) -> None:
        for hook in self._refresh:
            try:
                async with asyncio.timeout(REFRESH_TIMEOUT_S):
                    await hook()
            except Exception as exc:
                log.warning("metrics refresh %s failed: %r", getattr(hook, "__name__", hook), exc)
