"""One request to an in-process ASGI app whose answer may be an endless stream (SSE).

httpx's ``ASGITransport`` waits for the whole body, which a live stream never finishes. Here the
client disconnects (``http.disconnect``) as soon as the response has started, so the app's
stream ends the way it does for a real client that goes away; the status, headers and any body
sent so far are returned.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlsplit

import httpx


async def request_then_disconnect(
    app: Any,
    method: str,
    url: str,
    headers: dict[str, str],
    body: Any = None,
    *,
    client: tuple[str, int] = ("203.0.113.7", 50000),
) -> httpx.Response:
    parts = urlsplit(url)
    payload = b"" if body is None else json.dumps(body).encode()
    raw_headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    raw_headers.append((b"host", b"api"))
    if body is not None:
        raw_headers.append((b"content-type", b"application/json"))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": parts.path,
        "raw_path": parts.path.encode(),
        "query_string": parts.query.encode(),
        "root_path": "",
        "headers": raw_headers,
        "client": client,
        "server": ("api", 80),
    }
    started = asyncio.Event()
    request_sent = False
    status = 500
    response_headers: list[tuple[bytes, bytes]] = []
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal request_sent
        if not request_sent:
            request_sent = True
            return {"type": "http.request", "body": payload, "more_body": False}
        await started.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, response_headers
        if message["type"] == "http.response.start":
            status = message["status"]
            response_headers = list(message.get("headers", []))
            started.set()
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await asyncio.wait_for(app(scope, receive, send), timeout=60)
    return httpx.Response(
        status,
        headers=[(k.decode(), v.decode()) for k, v in response_headers],
        content=b"".join(chunks),
        request=httpx.Request(method, f"http://api{url}"),
    )
