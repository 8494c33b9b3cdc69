"""The API's share of observability: request metrics and a request id on every log line.

:class:`RequestContext` is a plain ASGI middleware (not ``BaseHTTPMiddleware``, which buffers
streaming answers such as SSE): it binds ``request_id`` (the caller's ``X-Request-ID`` when it is
a short token, else a fresh one, echoed in the answer) for every line logged while the request
runs, and counts the request by method, route template and status class. The route template
(``/api/chargers/{charge_box_id}``), never the raw path, keeps the label set bounded.

``/metrics`` and ``/healthz`` are not routes of the public app: they are served on
``POLARIS_API_METRICS_PORT`` by :class:`observability.http.ObservabilityServer`.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from observability.logs import bound
from observability.metrics import API_LATENCY, API_REQUESTS

REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            candidate = bytes(value).decode("latin-1")
            if REQUEST_ID.match(candidate):
                return candidate
    return uuid.uuid4().hex


class RequestContext:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            with bound(request_id=request_id):
                await self.app(scope, receive, send_with_id)
        finally:
            route = _route_template(scope)
            method = str(scope.get("method", "GET"))
            API_REQUESTS.labels(method, route, f"{status // 100}xx").inc()
            API_LATENCY.labels(method, route).observe(time.perf_counter() - started)


def _route_template(scope: Scope) -> str:
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"
