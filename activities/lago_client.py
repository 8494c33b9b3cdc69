"""The official Lago client, called off the event loop, with its errors mapped once.

``lago_python_client`` is synchronous (httpx under the hood): every call goes through
:func:`call_lago`, which runs it in a thread and translates failures:

    LagoError                          (base of what the read functions raise)
    ├── LagoNotFound                   404
    ├── LagoRejected                   other 4xx (status, code, details)
    └── LagoUnavailable                5xx, 429, timeouts, connection errors, unreadable answers

Activities turn them into ``ApplicationError``: :func:`to_application_error` makes
``LagoUnavailable`` retryable and everything else non-retryable, with the class name as ``type``.
A duplicate event (422 ``value_already_exist``) is *not* an error for us: ``LagoError.is_duplicate``
recognises it so callers count it as delivered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
from lago_python_client.client import Client
from lago_python_client.exceptions import LagoApiError, LagoRateLimitError
from temporalio.exceptions import ApplicationError

from config.settings import Settings
from observability.metrics import LAGO_REQUESTS

T = TypeVar("T")

# What the client's own default is for most calls; events.create has none (would wait forever).
LAGO_TIMEOUT = httpx.Timeout(10.0)


class LagoError(Exception):
    def __init__(self, message: str, *, status: int | None = None, response: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.response = response

    @property
    def code(self) -> str | None:
        if isinstance(self.response, dict):
            code = self.response.get("code")
            return code if isinstance(code, str) else None
        return None

    @property
    def is_duplicate(self) -> bool:
        """Lago's answer to an event whose ``transaction_id`` it already has (422)."""
        return self.status == 422 and "value_already_exist" in _detail_codes(self.response)


class LagoNotFound(LagoError):
    pass


class LagoRejected(LagoError):
    pass


class LagoUnavailable(LagoError):
    pass


def make_lago_client(settings: Settings) -> Client:
    """The official client for this deployment (the sandbox in dev, Lago elsewhere)."""
    return Client(api_key=settings.lago_api_key.get_secret_value(), api_url=settings.lago_base_url)


def _detail_codes(response: Any) -> set[str]:
    """Every error code in a 422 body, at any depth (batch errors are keyed by index)."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif isinstance(node, str):
            found.add(node)

    if isinstance(response, dict):
        walk(response.get("error_details"))
    return found


_OUTCOMES: dict[type[LagoError], str] = {
    LagoUnavailable: "unavailable",
    LagoRejected: "rejected",
    LagoNotFound: "not_found",
}


def translate(exc: BaseException) -> LagoError:
    """One place that decides what a client failure means."""
    if isinstance(exc, LagoRateLimitError):
        return LagoUnavailable("Lago rate limit", status=429)
    if isinstance(exc, LagoApiError):
        status = int(exc.status_code)
        if exc.url is None or status >= 500:
            # url None: the client could not parse the answer (HTML from a proxy, cut body).
            return LagoUnavailable(f"Lago answered {status}", status=status, response=exc.response)
        if status == 404:
            return LagoNotFound("not found in Lago", status=404, response=exc.response)
        return LagoRejected(f"Lago refused: {status}", status=status, response=exc.response)
    if isinstance(exc, httpx.HTTPError):
        return LagoUnavailable(f"Lago unreachable: {type(exc).__name__}")
    if isinstance(exc, LagoError):
        return exc
    raise exc


async def call_lago(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run a client call in a thread; raise a :class:`LagoError` on failure.

    Counted in ``polaris_lago_requests_total`` by the client method's name and the outcome."""
    operation = getattr(fn, "__name__", "call")
    try:
        result = await asyncio.to_thread(fn, *args, **kwargs)
    except (LagoApiError, httpx.HTTPError) as exc:
        error = translate(exc)
        LAGO_REQUESTS.labels(operation, _OUTCOMES.get(type(error), "rejected")).inc()
        raise error from exc
    LAGO_REQUESTS.labels(operation, "ok").inc()
    return result


def to_application_error(exc: LagoError) -> ApplicationError:
    """For activities: unavailable → retryable, refused/not found → non-retryable."""
    details: dict[str, Any] = {"status": exc.status, "code": exc.code}
    if isinstance(exc.response, dict) and "error_details" in exc.response:
        details["error_details"] = exc.response["error_details"]
    return ApplicationError(
        str(exc),
        details,
        type=type(exc).__name__,
        non_retryable=not isinstance(exc, LagoUnavailable),
    )
