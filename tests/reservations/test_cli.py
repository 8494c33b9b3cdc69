"""``polaris reservations list|cancel --json`` as a subprocess against the real database and
Temporal (the reservation's workflow runs on a real worker)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from config.settings import Settings
from db.engine import SessionFactory
from gateway.main import Gateway
from services import reservations
from services.actor import Actor
from services.context import ServiceContext
from services.reservations import ReservationIn
from tests.gateway.conftest import seed_card, seed_charger

# A hang guard, not a measurement: each `polaris` process imports the whole CLI (seconds of
# CPU), which a loaded machine stretches to tens of seconds per command.
pytestmark = pytest.mark.timeout(600)

ROOT = Path(__file__).resolve().parents[2]


async def polaris(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "POLARIS_ENV": "test",
        "POLARIS_DATABASE_URL": settings.require_database_url(),
        "POLARIS_TEMPORAL_ADDRESS": settings.temporal_address,
        "POLARIS_TEMPORAL_TASK_QUEUE": settings.temporal_task_queue,
        "POLARIS_DATA_DIR": str(settings.data_dir),
        "POLARIS_LAGO_API_KEY": "reservations-cli-test-key",
        "POLARIS_LAGO_WEBHOOK_SECRET": "reservations-cli-test-secret",
        "POLARIS_LOG_LEVEL": "WARNING",
    }
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "cli.main", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_list_and_cancel(
    stack: Gateway, ctx: ServiceContext, res_settings: Settings, session_factory: SessionFactory
) -> None:
    cb = await seed_charger(session_factory)
    tag = await seed_card(session_factory, prefix="RL")
    made = await reservations.create(
        ctx,
        Actor(id="user:t", role="customer", source="test"),
        f"user-{tag}",
        ReservationIn(
            charge_box_id=cb,
            starts_at=datetime.now(UTC) + timedelta(hours=2),
            duration_min=30,
        ),
    )
    listed = await polaris(res_settings, "reservations", "list", "--charger", cb, "--json")
    assert listed.returncode == 0, listed.stderr
    rows: list[dict[str, Any]] = json.loads(listed.stdout)
    assert [(r["id"], r["status"], r["user_id"]) for r in rows] == [
        (made.id, "pending", f"user-{tag}")
    ]
    table = await polaris(res_settings, "reservations", "list", "--charger", cb)
    assert table.returncode == 0 and made.id in table.stdout

    done = await polaris(
        res_settings, "reservations", "cancel", made.id, "--reason", "charger repairs", "--json"
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["status"] == "cancelled" and out["reason"] == "charger repairs"
    assert out["cancelled_by"].startswith("cli:")

    again = await polaris(res_settings, "reservations", "cancel", made.id, "--json")
    assert again.returncode == 5
    assert json.loads(again.stdout)["error"] == "RESERVATION_ENDED"
    missing = await polaris(res_settings, "reservations", "cancel", "no-such-id")
    assert missing.returncode == 4 and "not found" in missing.stderr
