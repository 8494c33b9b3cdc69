"""Rate limits shared across API processes: TWO real ``polaris api`` processes on one database.

A burst split across both processes is refused once the family's limit is spent, whichever
process counted the earlier requests; a client rotating ``X-Forwarded-For`` (the processes trust
no proxy) stays in its one bucket; a user-keyed family counts the user wherever they call. The
GCRA arithmetic and the pruning are checked on the database directly.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from db.engine import SessionFactory
from db.ratelimits import ApiRateLimit, prune, take
from tests.e2e.processes import ManagedProcess, polaris_process
from tests.fixtures.auth import AuthService
from tests.helpers import free_port, reset_rate_limits
from tests.identity.conftest import person

pytestmark = pytest.mark.timeout(180)

# POLARIS_SCAN_ARMS_PER_CLIENT_PER_MINUTE for both processes: one request back every 20 s, far
# longer than a burst of a few local requests takes.
LIMIT = 3
SCAN_LOGIN = "/api/v1/scan/login"


@pytest.fixture(scope="module")
def two_apis(
    tmp_path_factory: pytest.TempPathFactory, pg_url: str, auth_service: AuthService
) -> Iterator[list[str]]:
    """Two API processes (base URLs) sharing the session's database and auth service."""
    tmp: Path = tmp_path_factory.mktemp("two-apis")
    tmp.chmod(0o755)
    env = {
        "POLARIS_ENV": "test",
        "POLARIS_DATA_DIR": str(tmp / "data"),
        "POLARIS_DATABASE_URL": pg_url,
        "POLARIS_API_HOST": "127.0.0.1",
        "POLARIS_AUTH_URL": auth_service.base_url,
        "POLARIS_AUTH_INTERNAL_URL": auth_service.internal_url,
        "POLARIS_AUTH_INTERNAL_TOKEN": auth_service.internal_tokens["api"],
        "POLARIS_AUTH_SECRET": secrets.token_urlsafe(32),
        "POLARIS_LAGO_WEBHOOK_SECRET": secrets.token_urlsafe(32),
        "POLARIS_LAGO_API_KEY": secrets.token_urlsafe(32),
        "POLARIS_SCAN_ARMS_PER_CLIENT_PER_MINUTE": str(LIMIT),
        "POLARIS_LOG_LEVEL": "WARNING",
    }
    processes: list[ManagedProcess] = []
    try:
        for name in ("api-a", "api-b"):
            port = free_port()
            proc = polaris_process(
                name, "api", tmp, {**env, "POLARIS_API_PORT": str(port)}, port=port
            )
            proc.start()
            processes.append(proc)
        yield [f"http://127.0.0.1:{p.port}" for p in processes]
    finally:
        for proc in processes:
            proc.stop()


async def burst(
    urls: list[str], n: int, headers: list[dict[str, str]] | None = None
) -> list[httpx.Response]:
    """``n`` requests, alternating between the processes (an empty body: the limit counts
    before the body is validated, so nothing is armed)."""
    answers = []
    async with httpx.AsyncClient(timeout=30.0) as client:
        for i in range(n):
            extra = headers[i] if headers else {}
            answers.append(
                await client.post(urls[i % len(urls)] + SCAN_LOGIN, json={}, headers=extra)
            )
    return answers


async def test_a_burst_split_across_two_processes_is_refused_after_the_limit(
    two_apis: list[str], session_factory: SessionFactory
) -> None:
    await reset_rate_limits(session_factory)
    answers = await burst(two_apis, LIMIT + 2)
    codes = [a.status_code for a in answers]
    # Process A counted requests 1, 3 and 5, process B 2 and 4: neither alone reached LIMIT + 1,
    # so only a shared count refuses the last two.
    assert codes == [422] * LIMIT + [429, 429], codes
    assert [int(a.headers["X-RateLimit-Remaining"]) for a in answers] == [2, 1, 0, 0, 0]
    assert {a.headers["X-RateLimit-Limit"] for a in answers} == {str(LIMIT)}
    refused = answers[-1]
    assert refused.json()["error"] == "RATE_LIMITED"
    # One request comes back every 60 / LIMIT = 20 s; the bucket is full again within 60 s.
    assert 1 <= int(refused.headers["Retry-After"]) <= 20
    assert 1 <= int(refused.headers["X-RateLimit-Reset"]) <= 60


async def test_rotating_forwarded_for_opens_no_bucket_in_either_process(
    two_apis: list[str], session_factory: SessionFactory
) -> None:
    await reset_rate_limits(session_factory)
    forged = [{"X-Forwarded-For": f"198.51.100.{i}"} for i in range(1, 11)]
    codes = [a.status_code for a in await burst(two_apis, len(forged), forged)]
    assert codes == [422] * LIMIT + [429] * (len(forged) - LIMIT), codes
    async with session_factory() as db:
        keys = await db.scalars(select(ApiRateLimit.key).where(ApiRateLimit.family == "scan-login"))
        assert set(keys.all()) == {"ip:127.0.0.1"}


async def test_a_user_keyed_family_counts_the_user_across_processes(
    two_apis: list[str], session_factory: SessionFactory, auth_service: AuthService
) -> None:
    """``scan-secret`` (10 a minute per user): the admin's 11th request, wherever it lands."""
    await reset_rate_limits(session_factory)
    admin = await person(auth_service, "rl-admin", role="admin")
    other = await person(auth_service, "rl-admin-2", role="admin")
    async with httpx.AsyncClient(timeout=30.0) as client:
        # All at once, spread over both processes: the row serialises them, none slips through.
        answers = await asyncio.gather(
            *(
                client.post(
                    f"{two_apis[i % 2]}/api/v1/chargers/NO-SUCH-CB/scan-secret",
                    headers=admin.headers,
                )
                for i in range(11)
            )
        )
        codes = sorted(a.status_code for a in answers)
        fresh = await client.post(
            f"{two_apis[0]}/api/v1/chargers/NO-SUCH-CB/scan-secret", headers=other.headers
        )
        anonymous = await client.post(f"{two_apis[1]}/api/v1/chargers/NO-SUCH-CB/scan-secret")
    assert codes == [404] * 10 + [429], codes
    assert fresh.status_code == 404  # another user, another bucket
    assert anonymous.status_code == 401  # no user, nothing to count
    async with session_factory() as db:
        keys = await db.scalars(
            select(ApiRateLimit.key).where(ApiRateLimit.family == "scan-secret")
        )
        assert set(keys.all()) == {f"user:{admin.user_id}", f"user:{other.user_id}"}


async def test_gcra_refills_one_request_per_interval_and_prunes_full_buckets(
    engine: AsyncEngine,
) -> None:
    async with engine.connect() as conn:
        db = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await db.execute(text("DELETE FROM api_rate_limits WHERE family LIKE 'test-%'"))
        decisions = [await take(db, "test-gcra", "ip:192.0.2.1", 3, 3600) for _ in range(4)]
        assert [d.allowed for d in decisions] == [True, True, True, False]
        assert [d.remaining for d in decisions] == [2, 1, 0, 0]
        assert 1190 < decisions[-1].retry_after_s <= 1200  # one request every 3600 / 3 s
        # Pretend the interval passed: exactly one more request is allowed.
        await db.execute(
            text("UPDATE api_rate_limits SET tat_epoch_s = tat_epoch_s - :s WHERE family = :f"),
            {"s": 1200, "f": "test-gcra"},
        )
        again = [await take(db, "test-gcra", "ip:192.0.2.1", 3, 3600) for _ in range(2)]
        assert [d.allowed for d in again] == [True, False]
        # A full bucket (TAT in the past) counts like no row at all and is pruned.
        await take(db, "test-prune", "ip:192.0.2.2", 3, 3600)
        await db.execute(
            text("UPDATE api_rate_limits SET tat_epoch_s = tat_epoch_s - :s WHERE family = :f"),
            {"s": 7200, "f": "test-prune"},
        )
        assert await prune(db) >= 1
        left = await db.execute(
            text("SELECT family FROM api_rate_limits WHERE family LIKE 'test-%' ORDER BY family")
        )
        assert [r[0] for r in left.all()] == ["test-gcra"]
