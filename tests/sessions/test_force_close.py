"""Operators force-close a session the charger will not end: offline, refusing RemoteStop.

``polaris sessions close`` runs as a subprocess against the real gateway, worker and Temporal.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest
from sqlalchemy import select
from temporalio.client import Client

from api.session_actions import force_close
from db.engine import SessionFactory
from db.models import AuditLog
from gateway.main import Gateway
from tests.gateway.conftest import seed_card
from tests.helpers import eventually, process_secrets
from tests.sessions.conftest import Station, session_row, station, transaction
from tests.sessions.test_forgotten_transactions import ended, price, priced_charger
from workflows.messages import UPDATE_REMOTE_STOP, RemoteStopInput, RemoteStopResult

pytestmark = pytest.mark.timeout(180)


async def polaris(gateway: Gateway, *args: str) -> subprocess.CompletedProcess[str]:
    settings = gateway.settings
    env = {
        **os.environ,
        "POLARIS_ENV": "test",
        "POLARIS_DATA_DIR": str(settings.data_dir),
        "POLARIS_DATABASE_URL": settings.require_database_url(),
        "POLARIS_TEMPORAL_ADDRESS": settings.require_temporal_address(),
        "POLARIS_TEMPORAL_TASK_QUEUE": settings.temporal_task_queue,
        **process_secrets(),
    }
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def closure_audit(sf: SessionFactory, workflow_id: str) -> AuditLog:
    async with sf() as db:
        row = await db.scalar(
            select(AuditLog).where(
                AuditLog.action == "session.closed", AuditLog.subject == workflow_id
            )
        )
    assert row is not None
    return row


async def test_force_close_of_a_session_on_an_offline_charger_from_the_cli(
    stack: Gateway, stations: list[Station], session_factory: SessionFactory
) -> None:
    sf = session_factory
    cb = await priced_charger(sf)
    tag = await seed_card(sf)
    st = station(stack, stations, cb)
    await st.boot()
    assert await st.tap(tag) == "Accepted"
    tx, _ = await st.start(tag, 1000)
    await st.meter(tx, 1600)
    workflow_id = (await transaction(sf, tx)).workflow_id
    await eventually(lambda: session_row(sf, workflow_id), timeout=30)
    await st.crash()  # offline for good

    refused = await polaris(stack, "sessions", "close", workflow_id)
    assert refused.returncode != 0  # --reason is required

    done = await polaris(stack, "sessions", "close", workflow_id, "--reason", "charger offline")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "600 Wh" in done.stdout
    assert await ended(sf, workflow_id, "abandoned") == (600, price(600))
    row = await session_row(sf, workflow_id)
    assert row is not None and row.end_reason == "force_closed"
    audit = await closure_audit(sf, workflow_id)
    assert audit.actor.startswith("cli:")
    assert audit.details["note"] == "charger offline"
    assert (await transaction(sf, tx)).closed_reason == "operator"

    again = await polaris(stack, "sessions", "close", workflow_id, "--reason", "twice")
    assert again.returncode == 1 and "no running transaction" in again.stdout

    shown = await polaris(stack, "sessions", "show", workflow_id)
    assert "force_closed" in shown.stdout and "closed by the platform: operator" in shown.stdout


async def test_force_close_of_a_charger_that_refuses_remote_stop_with_an_entered_energy(
    stack: Gateway,
    stations: list[Station],
    session_factory: SessionFactory,
    temporal_client: Client,
) -> None:
    sf = session_factory
    cb = await priced_charger(sf)
    tag = await seed_card(sf)
    st = station(stack, stations, cb)
    await st.boot()
    assert st.cp is not None
    st.cp.remote_stop_status = "Rejected"  # it no longer knows the transaction
    assert await st.tap(tag) == "Accepted"
    tx, _ = await st.start(tag, 5000)
    await st.meter(tx, 5200)
    workflow_id = (await transaction(sf, tx)).workflow_id
    handle = temporal_client.get_workflow_handle(workflow_id)

    async def charging() -> bool:
        # The 5200 Wh reading has reached the workflow: the operator closes after it, not before.
        row = await session_row(sf, workflow_id)
        return row is not None and row.state == "charging" and row.energy_wh == 200

    await eventually(charging, timeout=30)
    stop = await handle.execute_update(
        UPDATE_REMOTE_STOP, RemoteStopInput(requested_by="cli:op"), result_type=RemoteStopResult
    )
    assert (stop.accepted, stop.message) == (False, "Rejected")

    # The operator read the meter on site: 2 kWh.
    result = await force_close(
        temporal_client,
        workflow_id,
        requested_by="user:operator-1",
        reason="charger refuses RemoteStop",
        energy_wh=2000,
    )
    assert (result.accepted, result.billed_energy_wh) == (True, 2000)
    assert await ended(sf, workflow_id, "abandoned") == (2000, price(2000))
    row = await session_row(sf, workflow_id)
    assert row is not None and {"force_closed", "operator_energy"} <= set(row.flags)
    audit = await closure_audit(sf, workflow_id)
    assert audit.actor == "user:operator-1"
    assert audit.details["billed_register_wh"] == 7000
