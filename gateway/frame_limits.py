"""Per-connection budgets: how fast a charger may send frames, and how often we log about it.

Both take the clock as an argument so they are plain state machines; the charge point owns one
of each per connection.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class FrameRateLimiter:
    """A token bucket over incoming frames: ``rate_per_s`` sustained, ``burst`` at once.

    :meth:`admit` is asked before each frame is handled. Within the budget it answers 0; over it,
    the seconds to hold the frame back (the caller sleeps, so the charger's socket is not read
    and TCP slows it down); when the connection has been held back for ``flood_close_s`` without
    once finding a token waiting, ``None``: the caller closes it. A charger that keeps to one
    message at a time and waits for each answer (as OCPP-J asks) never gets near that.
    """

    rate_per_s: float
    burst: int
    flood_close_s: float
    clock: Callable[[], float]
    _tokens: float = field(init=False)
    _updated_at: float = field(init=False)
    _throttled_since: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self._tokens = float(self.burst)
        self._updated_at = self.clock()

    def admit(self) -> float | None:
        if self.rate_per_s <= 0:
            return 0.0
        now = self.clock()
        self._tokens = min(
            float(self.burst), self._tokens + (now - self._updated_at) * self.rate_per_s
        )
        self._updated_at = now
        if self._tokens >= 1:
            self._tokens -= 1
            self._throttled_since = None
            return 0.0
        if self._throttled_since is None:
            self._throttled_since = now
        elif now - self._throttled_since >= self.flood_close_s:
            return None
        # Spend the token now; after the wait the bucket is back where it was (empty).
        wait_s = (1 - self._tokens) / self.rate_per_s
        self._tokens -= 1
        return wait_s


@dataclass
class LogThrottle:
    """At most one log line per ``interval_s``; :meth:`ready` says how many were held back."""

    interval_s: float
    clock: Callable[[], float]
    _last_at: float | None = field(init=False, default=None)
    _held: int = field(init=False, default=0)

    def ready(self) -> int | None:
        """``None``: stay quiet (counted). Otherwise log now; the number of lines skipped."""
        now = self.clock()
        if self._last_at is not None and now - self._last_at < self.interval_s:
            self._held += 1
            return None
        self._last_at, held, self._held = now, self._held, 0
        return held
