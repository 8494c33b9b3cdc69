"""Fault injection: answer with an error, delay, or drop the connection, before or after the API.

``phase="before"``: the request never reaches the API — nothing is stored.
``phase="after"``: the API handles the request (an event *is* stored), then the answer is replaced
(5xx), held back (delay) or lost (drop) — what a client sees when a response is lost in transit.
"""

from __future__ import annotations

import asyncio
import json
import logging
from http import HTTPStatus
from typing import Any

from sandbox.lago.config import FaultSpec
from sandbox.lago.contract import ASGIApp, Message, Receive, Scope, Send
from sandbox.lago.core import Sandbox

log = logging.getLogger("sandbox.lago.faults")


def take_fault(faults: list[FaultSpec], method: str, path: str) -> FaultSpec | None:
    """The first fault matching the request; consumes one of its ``count``."""
    for fault in faults:
        if not path.startswith(fault.path_prefix):
            continue
        if fault.method is not None and fault.method != method.upper():
            continue
        if fault.count is not None:
            fault.count -= 1
            if fault.count <= 0:
                faults.remove(fault)
        return fault
    return None


async def _send_status(send: Send, status: int) -> None:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Injected Fault"
    body = json.dumps(
        {"status": status, "error": phrase, "code": "sandbox_injected_fault"}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-sandbox-fault", b"status"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _drop(send: Send) -> None:
    """Close the connection without an answer (uvicorn: abort its transport)."""
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is not None and hasattr(transport, "abort"):
        transport.abort()
        for _ in range(10):  # let uvicorn notice the disconnect before we return
            await asyncio.sleep(0.01)
            if getattr(cycle, "disconnected", True):
                break
        return
    # Not uvicorn: start an answer that can never complete, then fail.
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4096")]}
    )
    raise ConnectionAbortedError("sandbox fault: connection dropped")


class FaultMiddleware:
    def __init__(self, app: ASGIApp, sandbox: Sandbox) -> None:
        self.app = app
        self.sandbox = sandbox
        self.hits: list[dict[str, Any]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path.startswith("/__sandbox"):
            await self.app(scope, receive, send)
            return
        fault = take_fault(self.sandbox.faults, scope["method"], path)
        if fault is None:
            await self.app(scope, receive, send)
            return
        log.info("injecting fault %s on %s %s", fault.to_dict(), scope["method"], path)
        self.hits.append({"method": scope["method"], "path": path, **fault.to_dict()})
        if fault.phase == "before":
            if fault.mode == "delay":
                await asyncio.sleep(fault.seconds)
                await self.app(scope, receive, send)
            elif fault.mode == "status":
                await _send_status(send, fault.status)
            else:
                await _drop(send)
            return
        captured: list[Message] = []

        async def capture(message: Message) -> None:
            captured.append(message)

        await self.app(scope, receive, capture)
        if fault.mode == "delay":
            await asyncio.sleep(fault.seconds)
            for message in captured:
                await send(message)
        elif fault.mode == "status":
            await _send_status(send, fault.status)
        else:
            await _drop(send)
