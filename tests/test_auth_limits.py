"""Client addresses, rate limits and the per-account lockout of the real auth service.

Two extra auth services (BetterAuth's rate limits on) on the session's database: ``direct``
trusts no proxy, like a deployment without one; ``proxied`` trusts loopback as its reverse proxy.
Distinct loopback source addresses (127.0.0.x) play distinct clients on the socket. The limits
are counted, not timed: bursts are sent concurrently, and the lockout's short backoff is waited
out with ``eventually``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from itertools import count
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from db.engine import SessionFactory
from db.models import AuditLog
from tests.fixtures.auth import AuthService, ensure_user, running_auth_service
from tests.helpers import eventually

pytestmark = pytest.mark.timeout(180)

PASSWORD = "correct-horse-battery-staple"
# BetterAuth's built-in rule for /sign-in/*: 3 requests per 10 s per client address.
SIGN_IN_LIMIT = 3
LOCKOUT_THRESHOLD = 5
# The proxied service's first lock: short, so the test waits it out.
LOCKOUT_BASE_S = 5
# The direct service's: long, so a lock certainly outlasts a burst however slow the machine.
LONG_LOCKOUT_BASE_S = 600

_addresses = count(1)


def _email(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}@example.com"


def _forwarded() -> str:
    """A client address never used before in this module (from 198.18.0.0/15, for testing)."""
    n = next(_addresses)
    return f"198.18.{n // 250}.{n % 250 + 1}"


LIMITS = {
    "POLARIS_AUTH_RATE_LIMIT": "true",
    "POLARIS_AUTH_LOCKOUT_THRESHOLD": str(LOCKOUT_THRESHOLD),
}


@pytest.fixture(scope="module")
async def direct(pg_url: str, tmp_root: Path) -> AsyncIterator[AuthService]:
    env = {**LIMITS, "POLARIS_AUTH_LOCKOUT_BASE_S": str(LONG_LOCKOUT_BASE_S)}
    async with running_auth_service(pg_url, tmp_root / "auth-direct.log", env) as service:
        yield service


@pytest.fixture(scope="module")
async def proxied(pg_url: str, tmp_root: Path) -> AsyncIterator[AuthService]:
    env = {
        **LIMITS,
        "POLARIS_AUTH_LOCKOUT_BASE_S": str(LOCKOUT_BASE_S),
        "POLARIS_AUTH_LOCKOUT_MAX_S": "60",
        "POLARIS_AUTH_TRUSTED_PROXIES": "127.0.0.1, ::1",
    }
    async with running_auth_service(pg_url, tmp_root / "auth-proxied.log", env) as service:
        yield service


def _client(service: AuthService, source: str = "127.0.0.1") -> httpx.AsyncClient:
    """A client whose socket comes from ``source`` (any 127.0.0.0/8 address on Linux)."""
    transport = httpx.AsyncHTTPTransport(local_address=source)
    return httpx.AsyncClient(base_url=service.base_url, transport=transport, timeout=20.0)


async def _guess(
    client: httpx.AsyncClient, email: str, password: str, forwarded: str | None = None
) -> httpx.Response:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    return await client.post(
        "/api/auth/sign-in/email", json={"email": email, "password": password}, headers=headers
    )


async def _burst(client: httpx.AsyncClient, n: int, forwarded: list[str | None]) -> list[int]:
    """n wrong guesses at once, each for its own unknown address (so no lockout is involved)."""
    answers = await asyncio.gather(
        *(_guess(client, _email("nobody"), "wrong-password-1", forwarded[i]) for i in range(n))
    )
    return [a.status_code for a in answers]


async def test_rotating_forwarded_for_from_a_non_proxy_peer_does_not_escape_the_limit(
    direct: AuthService,
) -> None:
    """The attack: a new X-Forwarded-For for every guess. Without a trusted proxy the header is
    ignored, so every guess lands in the one bucket of the socket's address."""
    async with _client(direct, "127.0.0.2") as client:
        codes = await _burst(client, 2 * SIGN_IN_LIMIT, [_forwarded() for _ in range(6)])
    assert codes.count(429) >= SIGN_IN_LIMIT, codes
    assert set(codes) <= {401, 429}, codes


async def test_without_a_proxy_each_socket_address_has_its_own_bucket(
    direct: AuthService,
) -> None:
    """No header: clients are told apart by their socket, not lumped into one shared bucket."""
    async with _client(direct, "127.0.0.3") as noisy:
        codes = await _burst(noisy, 2 * SIGN_IN_LIMIT, [None] * 6)
        assert codes.count(429) >= SIGN_IN_LIMIT, codes
        assert (await _guess(noisy, _email("x"), "wrong-password-1")).status_code == 429
    async with _client(direct, "127.0.0.4") as neighbour:
        answer = await _guess(neighbour, _email("x"), "wrong-password-1")
    assert answer.status_code == 401, answer.text


async def test_a_trusted_proxy_forwarded_address_is_honoured(proxied: AuthService) -> None:
    limited, other = _forwarded(), _forwarded()
    async with _client(proxied) as client:
        codes = await _burst(client, 2 * SIGN_IN_LIMIT, [limited] * 6)
        assert codes.count(429) >= SIGN_IN_LIMIT, codes
        # Another client behind the same proxy is not limited by the first one.
        assert (await _guess(client, _email("x"), "wrong-1", other)).status_code == 401
        # A spoofed hop on the left changes nothing: the proxy's own entry (rightmost) counts.
        spoofed = await _guess(client, _email("x"), "wrong-1", f"{_forwarded()}, {limited}")
        assert spoofed.status_code == 429


async def test_password_lockout_holds_against_rotating_addresses(
    proxied: AuthService, session_factory: SessionFactory
) -> None:
    """The attack: guess one account's password from a new address each time (each address
    stays under the per-address limit). After the threshold the account is locked for every
    address, the right password included, until the backoff has passed."""
    email = _email("target")
    await ensure_user(proxied, email, password=PASSWORD)
    async with _client(proxied) as client:
        for _ in range(LOCKOUT_THRESHOLD):
            wrong = await _guess(client, email, "wrong-password-1", _forwarded())
            assert wrong.status_code == 401, wrong.text
        locked = await _guess(client, email, PASSWORD, _forwarded())
        assert locked.status_code == 429, locked.text
        assert locked.json()["code"] == "ACCOUNT_LOCKED"
        assert 1 <= int(locked.headers["retry-after"]) <= LOCKOUT_BASE_S
        assert "set-auth-token" not in locked.headers

        async def unlocked() -> bool:
            answer = await _guess(client, email, PASSWORD, _forwarded())
            assert answer.status_code in (200, 429), answer.text
            return answer.status_code == 200

        await eventually(unlocked, timeout=60, interval=0.5, message="lock lifted after backoff")
        # The right password cleared the count: one wrong guess does not lock again.
        again = await _guess(client, email, "wrong-password-1", _forwarded())
        assert again.status_code == 401, again.text
        assert (await _guess(client, email, PASSWORD, _forwarded())).status_code == 200
    async with session_factory() as db:
        rows = (
            await db.scalars(
                select(AuditLog)
                .where(AuditLog.action == "auth.sign_in.locked")
                .order_by(AuditLog.id)
            )
        ).all()
    mine = [row for row in rows if row.details.get("email") == email]
    assert mine and mine[0].details["failures"] == LOCKOUT_THRESHOLD


async def test_a_parallel_burst_of_guesses_gets_at_most_the_threshold(direct: AuthService) -> None:
    """Attempts are counted before the password is checked: 20 guesses at once for one account,
    each from its own socket address, reach the password check exactly THRESHOLD times; unknown
    accounts lock the same way (the answer tells nothing about whether the account exists)."""
    known = _email("burst")
    await ensure_user(direct, known, password=PASSWORD)
    for round_, email in enumerate((known, _email("nobody"))):
        clients = [_client(direct, f"127.0.{10 + round_}.{i + 1}") for i in range(20)]
        try:
            answers = await asyncio.gather(
                *(_guess(client, email, "wrong-password-1") for client in clients)
            )
        finally:
            for client in clients:
                await client.aclose()
        codes = [a.status_code for a in answers]
        assert codes.count(401) == LOCKOUT_THRESHOLD, codes
        assert codes.count(429) == 20 - LOCKOUT_THRESHOLD, codes
        assert {a.json().get("code") for a in answers if a.status_code == 429} == {"ACCOUNT_LOCKED"}
