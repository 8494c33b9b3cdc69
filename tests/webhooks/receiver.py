"""A real HTTP receiver for webhook tests: uvicorn on a free port, answering from a script of
behaviours (``ok`` 204, ``fail`` 500, ``timeout`` — no answer until the test ends) and verifying
every request's signature with the ``standardwebhooks`` library, as a customer's server would."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from standardwebhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.helpers import free_port, wait_port


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    answered: str
    # For each secret the receiver knows: did it verify the request?
    verified: dict[str, bool] = field(default_factory=dict)

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


class Receiver:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hooks"
        self.script: list[str] = []  # consumed from the front; empty: `default`
        self.default = "ok"
        self.secrets: list[str] = []
        self.received: list[Received] = []
        self._release = asyncio.Event()

    def _verify(self, body: bytes, headers: dict[str, str]) -> dict[str, bool]:
        out: dict[str, bool] = {}
        for secret in self.secrets:
            try:
                Webhook(secret).verify(body, headers)
                out[secret] = True
            except WebhookVerificationError:
                out[secret] = False
        return out

    async def _hooks(self, request: Request) -> Response:
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        behaviour = self.script.pop(0) if self.script else self.default
        self.received.append(Received(headers, body, behaviour, self._verify(body, headers)))
        if behaviour == "timeout":
            # Never answers in time: the sender gives up first.
            with suppress(TimeoutError):
                await asyncio.wait_for(self._release.wait(), timeout=30)
            return Response(status_code=204)
        if behaviour == "fail":
            return Response("upstream broke", status_code=500)
        return Response(status_code=204, headers={"x-receiver": "test"})

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Receiver]:
        app = Starlette(routes=[Route("/hooks", self._hooks, methods=["POST"])])
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            ws="none",
            http="h11",
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        try:
            await asyncio.to_thread(wait_port, self.port, 30)
            yield self
        finally:
            self._release.set()
            server.should_exit = True
            await task


@asynccontextmanager
async def receiver(**attrs: Any) -> AsyncIterator[Receiver]:
    r = Receiver()
    for key, value in attrs.items():
        setattr(r, key, value)
    async with r.running():
        yield r
