"""``polaris migrate`` holds a PostgreSQL advisory lock: two migrators started together on an
empty database do not race; the second waits, then finds the schema at head."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from config.settings import libpq_url
from db.migrate import MIGRATION_LOCK_KEY, current_head
from tests.helpers import eventually

pytestmark = pytest.mark.timeout(180)

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def empty_db(pg_url: str) -> Iterator[str]:
    server = os.environ.get("POLARIS_TEST_DATABASE_URL") or pg_url
    base, _, _ = libpq_url(server).rpartition("/")
    name = f"polaris_lock_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(libpq_url(server), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"{base}/{name}"
    with psycopg.connect(libpq_url(server), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _waiting(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            " AND objid = %s AND database = (SELECT oid FROM pg_database"
            " WHERE datname = current_database())",
            (MIGRATION_LOCK_KEY,),
        ).fetchone()
    return int(row[0]) if row else 0


def _polaris_migrate(url: str) -> subprocess.Popen[str]:
    """The real `polaris migrate` (as the compose `migrate` service runs it)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("POLARIS_")}
    env = {**clean, "PYTHONPATH": str(REPO_ROOT), "POLARIS_ENV": "prod"}
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", "migrate"],
        env={**env, "POLARIS_DATABASE_URL": url},
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


async def test_two_concurrent_migrations_one_waits(empty_db: str) -> None:
    with psycopg.connect(empty_db, autocommit=True) as holder:
        # Stand in for a migrator that is in the middle of its run.
        holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        procs = [_polaris_migrate(empty_db) for _ in range(2)]
        try:
            # Both migrators are blocked on the lock, not creating tables side by side.
            await eventually(
                lambda: _waiting(empty_db) == 2, timeout=90, message="both migrators wait"
            )
            with psycopg.connect(empty_db) as probe:
                tables = probe.execute(
                    "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
                ).fetchone()
            assert tables == (0,)
            assert all(p.poll() is None for p in procs)
        finally:
            holder.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    with psycopg.connect(empty_db) as conn:
        versions = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    assert versions == [(current_head(),)]
