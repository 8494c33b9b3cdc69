"""Per-route-family rate limits, shared by every API process (docs/rate-limits.md).

Each limited request runs ONE statement on PostgreSQL (:func:`db.ratelimits.take`: a GCRA cell
per family and key in the UNLOGGED table ``api_rate_limits``, on the database clock), so two,
five or twenty API processes behind a load balancer enforce one limit together, not one each.

The key is the client address (:func:`api.client_address.client_address`: a forwarded header
counts only from a configured proxy, so rotating ``X-Forwarded-For`` opens no new bucket) or,
with ``by="user"``, the signed-in user (the bearer token's subject).

Every limited answer carries ``X-RateLimit-Limit`` (requests per period),
``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (seconds until the bucket is full again); a
refused request answers 429 ``RATE_LIMITED`` with ``Retry-After`` (seconds until the next one
is allowed). Cells of full buckets are pruned by :func:`prune_rate_limits_forever`, run by each
API process (deleting what no longer counts is idempotent, so several processes doing it is
harmless), which keeps the table to the clients active within the last period.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Literal

from fastapi import Request, Response
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.authz import CurrentUser
from api.client_address import request_client_address
from api.deps import get_state
from db.ratelimits import Decision, prune, take

log = logging.getLogger("polaris.api.ratelimit")

PRUNE_INTERVAL_S = 60.0


async def take_token(
    engine: AsyncEngine, family: str, key: str, capacity: int, period_s: float
) -> Decision:
    """One statement in autocommit: no BEGIN/COMMIT round trips around it."""
    async with engine.connect() as conn:
        autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
        return await take(autocommit, family, key, capacity, period_s)


def headers_of(decision: Decision) -> dict[str, str]:
    headers = {
        "X-RateLimit-Limit": str(decision.limit),
        "X-RateLimit-Remaining": str(decision.remaining),
        "X-RateLimit-Reset": str(math.ceil(decision.reset_s)),
    }
    if not decision.allowed:
        headers["Retry-After"] = str(max(1, math.ceil(decision.retry_after_s)))
    return headers


def rate_limit(
    family: str, capacity: int, per_seconds: float, *, by: Literal["ip", "user"] = "ip"
) -> Callable[..., Awaitable[None]]:
    """A dependency limiting ``family`` to ``capacity`` requests per ``per_seconds`` per key
    (a burst of ``capacity``, then one every ``per_seconds / capacity``).

    ``by="ip"``: the client address. ``by="user"``: the bearer token's user — the dependency
    authenticates the caller itself (FastAPI runs a route's ``dependencies=`` before its
    parameters, and caches :func:`~api.authz.current_user` for the request, so the route's own
    user dependency reuses that answer); an unauthenticated call answers 401 before counting.
    """

    async def limit(request: Request, response: Response, key: str) -> None:
        engine = get_state(request).engine
        decision = await take_token(engine, family, key, capacity, per_seconds)
        headers = headers_of(decision)
        if not decision.allowed:
            raise HTTPException(429, f"too many {family} requests; retry later", headers=headers)
        # On whatever answers the request, errors included (RateLimitHeaders below).
        request.state.rate_limit_headers = headers
        response.headers.update(headers)

    async def by_address(request: Request, response: Response) -> None:
        await limit(request, response, f"ip:{request_client_address(request)}")

    async def by_user(request: Request, response: Response, principal: CurrentUser) -> None:
        await limit(request, response, f"user:{principal.user_id}")

    return by_user if by == "user" else by_address


class RateLimitHeaders:
    """ASGI middleware: the ``X-RateLimit-*`` headers of a limited request on its answer, also
    when that answer is an error built outside the route (a 422 of the body, a 404). Pure ASGI,
    so streamed answers pass through untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                state = scope.get("state") or {}
                extra: dict[str, str] | None = state.get("rate_limit_headers")
                if extra:
                    headers = MutableHeaders(scope=message)
                    for name, value in extra.items():
                        if name not in headers:
                            headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def prune_rate_limits_forever(
    engine: AsyncEngine, interval_s: float = PRUNE_INTERVAL_S
) -> None:
    """Delete full buckets every ``interval_s`` until cancelled (the API's lifespan runs it)."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            async with engine.connect() as conn:
                autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await prune(autocommit)
        except (DBAPIError, OSError) as exc:  # the next round tries again
            log.warning("pruning rate limits failed: %s", exc)


__all__ = [
    "RateLimitHeaders",
    "headers_of",
    "prune_rate_limits_forever",
    "rate_limit",
    "take_token",
]
