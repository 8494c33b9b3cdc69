"""What a wrong password may cost the gateway, decided before any hashing.

Checking a charger password costs one scrypt (~50 ms of CPU, 16 MiB). Without limits a flood of
wrong-password handshakes queues every legitimate charger behind it. The controls, cheapest
first (the last two live in :mod:`gateway.server`):

1. :class:`HandshakeGuard` throttles per client address and per chargeBoxId: after ``limit``
   wrong passwords within ``window_s`` (handshakes still being checked count as failures until
   they finish, so a burst cannot slip past the count), the key is locked out for a backoff that
   doubles with each lockout. A locked-out handshake is answered 429 before the database or the
   hash is touched.
2. A cap on handshakes being checked at once (503 past it).
3. A small thread pool of its own for scrypt, so hashing never starves the default executor.

The per-chargeBoxId throttle would let an attacker lock a charger out by guessing its password;
the address the charger last authenticated from (in this process) is exempt from it, so the real
charger keeps connecting while the guesser is locked out.

Pure and synchronous (an injected clock, no I/O): every decision is taken before the first
``await`` of a handshake, so concurrent handshakes see each other's reservations.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from config.settings import Settings
from domain.addresses import forwarded_client

# Keys remembered per throttle. Past it the least recently used key is forgotten: memory stays
# bounded under a flood of distinct addresses, and the concurrency cap still bounds the CPU.
MAX_TRACKED_KEYS = 10_000
# An IPv6 client controls a whole /64: throttling single addresses would be no throttle at all.
IPV6_PREFIX_LEN = 64
# While a key's allowance is taken by handshakes still being checked, retry after this long.
IN_FLIGHT_RETRY_S = 1.0
# Lockouts stop doubling here (the maximum backoff caps the duration long before anyway).
MAX_DOUBLINGS = 20

# The client address rule is shared with the API (domain/addresses.py).
client_address = forwarded_client


def address_key(address: str | None) -> str:
    """The throttling key of an address: IPv4 as is, IPv6 by its /64."""
    if address is None:
        return "unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/{IPV6_PREFIX_LEN}", strict=False))
    return str(ip)


@dataclass
class _KeyState:
    failures: deque[float] = field(default_factory=deque)
    in_flight: int = 0
    lockouts: int = 0
    locked_until: float = 0.0


class FailureThrottle:
    """Counts failures per key in a sliding window and locks a key out with doubling backoff."""

    def __init__(
        self,
        *,
        limit: int,
        window_s: float,
        backoff_s: float,
        backoff_max_s: float,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = MAX_TRACKED_KEYS,
    ) -> None:
        self._limit = limit
        self._window_s = window_s
        self._backoff_s = backoff_s
        self._backoff_max_s = backoff_max_s
        self._clock = clock
        self._max_keys = max_keys
        self._keys: OrderedDict[str, _KeyState] = OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    def retry_after_s(self, key: str) -> float | None:
        """None when an attempt may go ahead; otherwise how long the client should wait."""
        state = self._keys.get(key)
        if state is None:
            return None
        now = self._clock()
        if now < state.locked_until:
            return state.locked_until - now
        self._prune(state, now)
        if len(state.failures) + state.in_flight >= self._limit:
            return IN_FLIGHT_RETRY_S
        return None

    def locked_for_s(self, key: str) -> float | None:
        """How long ``key`` is still locked out (None when it is not)."""
        state = self._keys.get(key)
        if state is None:
            return None
        now = self._clock()
        return state.locked_until - now if now < state.locked_until else None

    def begin(self, key: str) -> None:
        state = self._keys.get(key)
        if state is None:
            if len(self._keys) >= self._max_keys:
                self._keys.popitem(last=False)
            state = self._keys[key] = _KeyState()
        else:
            self._keys.move_to_end(key)
        state.in_flight += 1

    def fail(self, key: str) -> None:
        state = self._keys.get(key)
        if state is None:
            return  # forgotten under memory pressure while the handshake was being checked
        now = self._clock()
        state.in_flight = max(0, state.in_flight - 1)
        self._prune(state, now)
        state.failures.append(now)
        if len(state.failures) >= self._limit:
            state.lockouts += 1
            doublings = min(state.lockouts - 1, MAX_DOUBLINGS)
            state.locked_until = now + min(self._backoff_s * 2**doublings, self._backoff_max_s)
            state.failures.clear()

    def release(self, key: str) -> None:
        """The handshake ended neither in a failure nor in proof of the password."""
        state = self._keys.get(key)
        if state is None:
            return
        state.in_flight = max(0, state.in_flight - 1)
        now = self._clock()
        self._prune(state, now)
        if not state.in_flight and not state.failures and not state.lockouts:
            del self._keys[key]

    def succeed(self, key: str) -> None:
        """The password was proven: the key's failures and lockouts no longer mean anything.
        Other handshakes still being checked keep their reservations."""
        state = self._keys.get(key)
        if state is None:
            return
        state.in_flight = max(0, state.in_flight - 1)
        state.failures.clear()
        state.lockouts = 0
        state.locked_until = 0.0
        if not state.in_flight:
            del self._keys[key]

    def _prune(self, state: _KeyState, now: float) -> None:
        while state.failures and state.failures[0] <= now - self._window_s:
            state.failures.popleft()
        # A key quiet for a whole maximum backoff after its last lockout starts over.
        if state.lockouts and now >= state.locked_until + self._backoff_max_s:
            state.lockouts = 0


class Outcome(Enum):
    FAILED = "failed"  # a wrong password (or an attempt to displace an authenticated charger)
    SUCCEEDED = "succeeded"  # the right password
    NEUTRAL = "neutral"  # anything else: no credentials needed or offered, unknown charger, error


@dataclass(frozen=True)
class Ticket:
    """One admitted handshake; hand it back to :meth:`HandshakeGuard.settle` exactly once."""

    address_key: str
    charge_box_id: str
    charger_throttled: bool
    # False for a handshake that offers no credentials: it can never be a wrong password, so it
    # holds no place in the failure count (a reconnect storm of chargers that need no password,
    # all behind one address, must not lock that address out).
    reserved: bool = True


class HandshakeGuard:
    """Admission before hashing: a throttle per client address and one per chargeBoxId."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        def throttle() -> FailureThrottle:
            return FailureThrottle(
                limit=settings.gateway_auth_failure_limit,
                window_s=settings.gateway_auth_failure_window_s,
                backoff_s=settings.gateway_auth_backoff_s,
                backoff_max_s=settings.gateway_auth_backoff_max_s,
                clock=clock,
            )

        self.by_address = throttle()
        self.by_charger = throttle()
        # chargeBoxId → the address key it last proved its password from.
        self._last_good: OrderedDict[str, str] = OrderedDict()

    def admit(
        self, address: str | None, charge_box_id: str, *, offers_credentials: bool = True
    ) -> Ticket | float:
        """A ticket to check this handshake, or the seconds to wait (answer 429).

        A handshake without credentials cannot fail a password check: it is refused only while
        its address or charger id is locked out, and reserves nothing."""
        key = address_key(address)
        if not offers_credentials:
            locks = [self.by_address.locked_for_s(key)]
            if self._last_good.get(charge_box_id) != key:
                locks.append(self.by_charger.locked_for_s(charge_box_id))
            wait = max((w for w in locks if w is not None), default=None)
            if wait is not None:
                return wait
            return Ticket(key, charge_box_id, charger_throttled=False, reserved=False)
        charger_throttled = self._last_good.get(charge_box_id) != key
        waits = [self.by_address.retry_after_s(key)]
        if charger_throttled:
            waits.append(self.by_charger.retry_after_s(charge_box_id))
        wait = max((w for w in waits if w is not None), default=None)
        if wait is not None:
            return wait
        self.by_address.begin(key)
        if charger_throttled:
            self.by_charger.begin(charge_box_id)
        return Ticket(key, charge_box_id, charger_throttled)

    def settle(self, ticket: Ticket, outcome: Outcome) -> None:
        if not ticket.reserved:
            return
        if outcome is Outcome.FAILED:
            self.by_address.fail(ticket.address_key)
            if ticket.charger_throttled:
                self.by_charger.fail(ticket.charge_box_id)
            return
        self.by_address.release(ticket.address_key)
        if outcome is Outcome.SUCCEEDED:
            if ticket.charger_throttled:
                self.by_charger.succeed(ticket.charge_box_id)
            self._last_good[ticket.charge_box_id] = ticket.address_key
            self._last_good.move_to_end(ticket.charge_box_id)
            if len(self._last_good) > MAX_TRACKED_KEYS:
                self._last_good.popitem(last=False)
        elif ticket.charger_throttled:
            self.by_charger.release(ticket.charge_box_id)
