"""A few seconds' memory of live session checks, for admin reads.

Admin routes ask the auth service whether the session behind the JWT is still active and still
an admin (a role claim in a JWT lives 15 minutes; a demotion or a ban must not). Asking on every
admin read is one loopback call; this cache lets a burst of reads share one answer for at most
``POLARIS_API_ADMIN_CHECK_CACHE_S`` seconds. Changes made through this API process (role, ban,
unban) drop the user's entries at once; a change made elsewhere is seen within the TTL.
Sensitive writes (:data:`api.authz.LiveAdmin`) never use the cache.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from activities.auth_client import SessionCheck

MAX_ENTRIES = 10_000


class LiveSessionCache:
    def __init__(self, ttl_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, SessionCheck]] = OrderedDict()

    def get(self, session_id: str) -> SessionCheck | None:
        entry = self._entries.get(session_id)
        if entry is None:
            return None
        at, check = entry
        if self._clock() - at >= self.ttl_s:
            del self._entries[session_id]
            return None
        return check

    def put(self, session_id: str, check: SessionCheck) -> None:
        if self.ttl_s <= 0:
            return
        self._entries.pop(session_id, None)
        self._entries[session_id] = (self._clock(), check)
        while len(self._entries) > MAX_ENTRIES:
            self._entries.popitem(last=False)

    def forget_user(self, user_id: str) -> None:
        stale = [sid for sid, (_, check) in self._entries.items() if check.user_id == user_id]
        for sid in stale:
            del self._entries[sid]


__all__ = ["LiveSessionCache"]
