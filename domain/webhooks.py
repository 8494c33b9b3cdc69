"""Outgoing webhooks, the pure part: the envelope, the retry schedule, the dispatcher's cursor
over ``platform_events``, and which URLs an endpoint may have (docs/webhooks.md).

Nothing here does I/O; ``services/webhooks.py``, ``activities/webhooks.py`` and
``workflows/webhooks.py`` call it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from domain.events import EVENT_TYPES

MAX_URL_LENGTH = 2000


def envelope(
    event_type: str, event_id: int, occurred_at: datetime, data: dict[str, Any]
) -> dict[str, Any]:
    """The body of every webhook: ``{"type", "id", "created_at", "data"}``. ``id`` names the
    platform event (``evt_<n>``, the same for every endpoint that hears it); the ``webhook-id``
    header names the delivery (one per endpoint and event)."""
    return {
        "type": event_type,
        "id": f"evt_{event_id}",
        "created_at": occurred_at.isoformat().replace("+00:00", "Z"),
        "data": data,
    }


def check_event_types(types: list[str]) -> list[str]:
    """Known event types, or a family wildcard (``reservation.*``) or ``*``; sorted, unique."""
    out: set[str] = set()
    families = {t.split(".", 1)[0] for t in EVENT_TYPES}
    for name in types:
        if name == "*" or name in EVENT_TYPES or (name.endswith(".*") and name[:-2] in families):
            out.add(name)
        else:
            raise ValueError(f"unknown event type {name!r}")
    if not out:
        raise ValueError("subscribe to at least one event type")
    return sorted(out)


def subscribed(patterns: list[str], event_type: str) -> bool:
    family = event_type.split(".", 1)[0]
    return any(p in ("*", event_type, f"{family}.*") for p in patterns)


# -- retries ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetrySchedule:
    """Exponential backoff: ``first_delay_s``, ×``factor`` each time, at most ``max_delay_s``,
    until the delays add up to ``give_up_after_s`` (then the delivery has failed)."""

    first_delay_s: float = 5.0
    factor: float = 2.0
    max_delay_s: float = 3600.0
    give_up_after_s: float = 86400.0

    def delays(self) -> list[float]:
        """The waits between attempts: attempt 1 at once, attempt ``n+1`` after ``delays[n-1]``.
        The last attempt happens no earlier than ``give_up_after_s`` after the first."""
        out: list[float] = []
        delay, total = max(self.first_delay_s, 0.001), 0.0
        while total < self.give_up_after_s:
            step = min(delay, self.max_delay_s)
            out.append(step)
            total += step
            delay *= max(self.factor, 1.0)
        return out


# -- the dispatcher's cursor ------------------------------------------------------------------


@dataclass(frozen=True)
class Cursor:
    """Every event id up to ``last_id`` was seen, except ``gaps`` (id → first noticed)."""

    last_id: int
    gaps: dict[int, datetime]


def advance(cursor: Cursor, seen: list[int], now: datetime, gap_ttl: timedelta) -> Cursor:
    """The cursor after reading the events ``seen`` (ids above ``last_id``, or former gaps).

    Ids come from a sequence when the row is inserted, so an event can commit after a larger id
    was already read: the ids skipped over are kept as gaps and looked for again until
    ``gap_ttl`` has passed (then they were rolled back, or their transaction is too old to
    wait for)."""
    seen_set = set(seen)
    gaps = {i: at for i, at in cursor.gaps.items() if i not in seen_set and now - at < gap_ttl}
    new = sorted(i for i in seen_set if i > cursor.last_id)
    last = cursor.last_id
    for event_id in new:
        for missing in range(last + 1, event_id):
            gaps[missing] = now
        last = event_id
    return Cursor(last_id=last, gaps=gaps)


# -- URLs -------------------------------------------------------------------------------------


def check_url(url: str) -> str:
    """An absolute ``http(s)://`` URL with a host and no credentials; else ``ValueError``."""
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"at most {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValueError("not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError("only http:// and https:// URLs")
    if not parts.hostname:
        raise ValueError("the URL has no host")
    if parts.username or parts.password:
        raise ValueError("no user name or password in the URL (the signature authenticates)")
    if parts.fragment:
        raise ValueError("no #fragment in the URL")
    return url


def forbidden_address(address: str) -> str | None:
    """Why a webhook may not go to this IP address (loopback, private, link-local...), or None
    for a public address."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for reason, test in (
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("private", ip.is_private),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
        ("unspecified", ip.is_unspecified),
        ("not globally routable", not ip.is_global),
    ):
        if test:
            return reason
    return None


__all__ = [
    "Cursor",
    "RetrySchedule",
    "advance",
    "check_event_types",
    "check_url",
    "envelope",
    "forbidden_address",
    "subscribed",
]
