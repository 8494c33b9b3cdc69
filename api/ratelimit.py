"""Per-route-family rate limits: an in-process token bucket per client address or per user.

The address is :func:`api.client_address.client_address`: a forwarded header counts only from a
configured proxy, so rotating ``X-Forwarded-For`` does not open new buckets.

One API process keeps its own buckets (several processes make the limit looser, never
stricter). A refused request answers 429 ``RATE_LIMITED`` with ``Retry-After``; every answer
carries ``X-RateLimit-Limit`` and ``X-RateLimit-Remaining`` when the family is limited.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from fastapi import Request, Response
from starlette.exceptions import HTTPException

from api.client_address import request_client_address

MAX_KEYS = 10_000


@dataclass
class _Bucket:
    tokens: float
    at: float


class TokenBuckets:
    def __init__(
        self, capacity: int, per_seconds: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.capacity = capacity
        self.refill_per_s = capacity / per_seconds
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, key: str) -> tuple[bool, int, float]:
        """(allowed, tokens remaining, seconds until the next token)."""
        now = self._clock()
        bucket = self._buckets.pop(key, None) or _Bucket(float(self.capacity), now)
        bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.at) * self.refill_per_s)
        bucket.at = now
        self._buckets[key] = bucket
        while len(self._buckets) > MAX_KEYS:
            self._buckets.popitem(last=False)
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return True, int(bucket.tokens), 0.0
        return False, 0, (1 - bucket.tokens) / self.refill_per_s


def rate_limit(
    family: str, capacity: int, per_seconds: float, *, by: Literal["ip", "user"] = "ip"
) -> Callable[[Request, Response], None]:
    """A dependency limiting ``family`` to ``capacity`` requests per ``per_seconds`` per key.

    ``by="user"`` keys on the bearer token's subject when the route already resolved one
    (``request.state.user_id``), else on the address.
    """

    def dependency(request: Request, response: Response) -> None:
        registry: dict[str, TokenBuckets] = request.app.state.__dict__.setdefault(
            "polaris_rate_limits", {}
        )
        buckets = registry.get(family)
        if buckets is None:
            buckets = registry[family] = TokenBuckets(capacity, per_seconds)
        user_id = getattr(request.state, "user_id", None) if by == "user" else None
        key = f"user:{user_id}" if user_id else f"ip:{request_client_address(request)}"
        allowed, remaining, wait_s = buckets.take(key)
        headers = {"X-RateLimit-Limit": str(capacity), "X-RateLimit-Remaining": str(remaining)}
        if not allowed:
            headers["Retry-After"] = str(max(1, math.ceil(wait_s)))
            raise HTTPException(429, f"too many {family} requests; retry later", headers=headers)
        response.headers.update(headers)

    return dependency


__all__ = ["TokenBuckets", "rate_limit"]
