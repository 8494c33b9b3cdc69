"""Run the SteVe stand-in under uvicorn: :class:`RunningSteve` (tests, ``polaris dev``) and the
command line ``python -m sandbox.steve``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from collections.abc import Sequence

import uvicorn

from sandbox.steve.app import SteveConfig, SteveStandIn, create_app

DEFAULT_PORT = 8180


class RunningSteve:
    """A stand-in served on the running event loop. ``stop()`` then ``start()`` again on the same
    port is "SteVe down and back": its data (``standin``) survives, its sockets do not."""

    def __init__(self, standin: SteveStandIn, host: str = "127.0.0.1", port: int = 0) -> None:
        self.standin = standin
        self.host = host
        self.port = port
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/steve"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/steve/websocket/CentralSystemService/"

    async def start(self, timeout_s: float = 30.0) -> None:
        config = uvicorn.Config(
            create_app(self.standin),
            host=self.host,
            port=self.port,
            log_level="warning",
            lifespan="off",
            ws="websockets-sansio",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        async with asyncio.timeout(timeout_s):
            while not self._server.started:
                if self._task.done():
                    self._task.result()
                    raise RuntimeError("the SteVe stand-in did not start")
                await asyncio.sleep(0.02)
        if self.port == 0:
            self.port = int(self._server.servers[0].sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        for ws in list(self.standin.sockets.values()):
            await ws.close(1001)
        await self._task
        self._server = None
        self._task = None


async def serve(config: SteveConfig, host: str, port: int) -> None:
    running = RunningSteve(SteveStandIn(config=config), host, port)
    await running.start()
    try:
        await asyncio.Event().wait()
    finally:
        await running.stop()


def parse_args(argv: Sequence[str] | None = None) -> tuple[SteveConfig, str, int]:
    env = os.environ
    parser = argparse.ArgumentParser(prog="python -m sandbox.steve", description="SteVe stand-in")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--user", default=env.get("POLARIS_STEVE_API_USER", "polaris"))
    parser.add_argument("--lenient-contract", action="store_true")
    args = parser.parse_args(argv)
    password = env.get("POLARIS_STEVE_API_PASSWORD") or SteveConfig().password
    config = SteveConfig(user=args.user, password=password)
    config.strict_contract = not args.lenient_contract
    return config, args.host, args.port


def main(argv: Sequence[str] | None = None) -> None:
    config, host, port = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("sandbox.steve").info("SteVe stand-in on http://%s:%d/steve", host, port)
    asyncio.run(serve(config, host, port))
