"""Test helpers: wait for a condition instead of sleeping; free ports; process checks."""

from __future__ import annotations

import asyncio
import inspect
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client
from temporalio.service import RPCError

T = TypeVar("T")


async def eventually(
    check: Callable[[], Awaitable[T] | T],
    *,
    timeout: float = 30.0,
    interval: float = 0.1,
    message: str = "condition",
) -> T:
    """Call ``check`` until it returns a truthy value without raising ``AssertionError``.

    Returns that value. On timeout, re-raises the last assertion (or fails with ``message``).
    """
    deadline = time.monotonic() + timeout
    last_error: AssertionError | None = None
    while True:
        try:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result
            last_error = None
        except AssertionError as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            if last_error is not None:
                raise last_error
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        await asyncio.sleep(interval)


def ocpp_ts(seconds_from_now: float = 0.0, *, base: datetime | None = None) -> str:
    """An OCPP dateTime (``…Z``) relative to now: the gateway refuses times far from its clock."""
    at = (base or datetime.now(UTC)) + timedelta(seconds=seconds_from_now)
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 60.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def wait_temporal(address: str, timeout: float = 60.0) -> None:
    """Wait until the Temporal server at ``address`` serves its default namespace.

    An open port is not enough: the dev server's frontend answers "Frontend is not healthy yet"
    for a moment after it starts listening, and a test that connects then fails.
    """

    async def serving() -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                client = await Client.connect(address)
                await client.workflow_service.describe_namespace(
                    DescribeNamespaceRequest(namespace="default")
                )
                return
            except (RPCError, RuntimeError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

    # A thread of its own: the caller may be a fixture running inside the test's event loop.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, serving()).result()


def process_secrets() -> dict[str, str]:
    """Fresh secrets for a ``polaris`` command run as a real process: outside a dev stack every
    command refuses the development secrets the repository publishes (``config/startup.py``)."""
    return {
        "POLARIS_AUTH_SECRET": secrets.token_urlsafe(32),
        "POLARIS_AUTH_INTERNAL_TOKEN": secrets.token_urlsafe(32),
        "POLARIS_LAGO_API_KEY": secrets.token_urlsafe(24),
        "POLARIS_LAGO_WEBHOOK_SECRET": secrets.token_urlsafe(32),
    }


async def reset_rate_limits(factory: async_sessionmaker[AsyncSession]) -> None:
    """Empty the shared rate limits (api_rate_limits): a test's fresh API app starts with full
    buckets, as a fresh process did when the limits lived in memory. Tests run one at a time
    on their own database, so this touches no other test's counting."""
    async with factory.begin() as db:
        await db.execute(text("DELETE FROM api_rate_limits"))
