"""A real uvicorn server running the Lago sandbox in a thread, driven by the official client."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from lago_python_client.client import Client

from sandbox.lago.app import create_app
from sandbox.lago.config import SandboxConfig
from tests.helpers import free_port

API_KEY = "sandbox-test-key"


@dataclass
class RunningSandbox:
    url: str
    config: SandboxConfig
    app: Any
    server: uvicorn.Server
    thread: threading.Thread

    def client(self) -> Client:
        return Client(api_key=self.config.api_key, api_url=self.url)

    def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, f"{self.url}/__sandbox{path}", timeout=10, **kwargs)

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.config.api_key}", **kwargs.pop("headers", {})}
        return httpx.request(
            method, f"{self.url}/api/v1{path}", headers=headers, timeout=10, **kwargs
        )

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        assert not self.thread.is_alive(), "sandbox server did not stop"


def start_sandbox(config: SandboxConfig) -> RunningSandbox:
    port = free_port()
    app = create_app(config)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            ws="none",
            lifespan="on",
            access_log=False,
        )
    )
    thread = threading.Thread(target=server.run, name=f"lago-sandbox-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("sandbox server did not start")
        time.sleep(0.02)
    return RunningSandbox(f"http://127.0.0.1:{port}", config, app, server, thread)


def wait_until(check: Any, timeout: float = 10.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {check}")
        time.sleep(interval)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[RunningSandbox]:
    """One server per test module; at teardown no response may have broken the contract."""
    running = start_sandbox(
        SandboxConfig(api_key=API_KEY, admin_enabled=True, pdf_delay_seconds=0.05)
    )
    try:
        yield running
        violations = running.app.sandbox.contract_log.violations
        assert violations == [], f"responses that break the Lago OpenAPI document: {violations}"
    finally:
        running.stop()


@pytest.fixture
def lago(sandbox: RunningSandbox) -> Client:
    return sandbox.client()
