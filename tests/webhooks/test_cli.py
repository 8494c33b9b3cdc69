"""``polaris webhooks …`` as a real process, against the test's worker and a real receiver."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from temporalio.worker import Worker

from config.settings import Settings
from db.engine import SessionFactory
from db.events import record_event
from domain import events as ev
from services import webhooks
from services.context import ServiceContext
from tests.helpers import eventually, process_secrets
from tests.webhooks.receiver import receiver

# A hang guard, not a measurement: each `polaris` process imports the whole CLI (seconds of
# CPU), which a loaded machine stretches to tens of seconds per command.
pytestmark = pytest.mark.timeout(600)

REPO = Path(__file__).resolve().parents[2]


async def polaris(
    settings: Settings, *args: str, allow_private: bool = True
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        **process_secrets(),
        "PYTHONPATH": str(REPO),
        "POLARIS_ENV": "test",
        "POLARIS_DATA_DIR": str(settings.data_dir),
        "POLARIS_DATABASE_URL": settings.require_database_url(),
        "POLARIS_TEMPORAL_ADDRESS": settings.require_temporal_address(),
        "POLARIS_TEMPORAL_TASK_QUEUE": settings.temporal_task_queue,
        "POLARIS_WEBHOOKS_ALLOW_PRIVATE_TARGETS": "true" if allow_private else "false",
        "POLARIS_LOG_LEVEL": "WARNING",
    }
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "cli.main", "webhooks", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


async def _json(settings: Settings, *args: str) -> object:
    done = await polaris(settings, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


async def test_webhooks_from_the_cli(
    wh_ctx: ServiceContext, wh_worker: Worker, session_factory: SessionFactory
) -> None:
    settings = wh_ctx.settings
    refused = await polaris(settings, "endpoints", "add", "http://127.0.0.1:9/x",
                            "--events", "card.lost", allow_private=False)  # fmt: skip
    assert refused.returncode != 0 and "loopback" in refused.stderr + refused.stdout

    async with receiver() as rx:
        add = ["endpoints", "add", rx.url, "--events", "card.lost,session.*"]
        created = await _json(settings, *add, "--description", "from the CLI")
        assert isinstance(created, dict) and created["owner_user_id"] == "operators"
        endpoint_id = created["id"]
        rx.secrets = [created["secret"]]
        listed = await _json(settings, "endpoints", "list")
        assert isinstance(listed, list) and endpoint_id in [e["id"] for e in listed]

        async with session_factory.begin() as db:
            await record_event(
                db,
                ev.CARD_LOST,
                {
                    "card_public_id": "CLI00001",
                    "user_id": "u-cli",
                    "lost_at": "2026-11-29T15:00:00Z",
                },
            )
        await eventually(lambda: len(rx.received) == 1, message="the delivery")
        assert rx.received[0].verified == {created["secret"]: True}

        async def recorded(chains: int) -> bool:
            rows = await webhooks.list_deliveries(wh_ctx, endpoint_id=endpoint_id)
            return (
                len(rows) == 1 and rows[0]["status"] == "delivered" and rows[0]["chain"] == chains
            )

        await eventually(lambda: recorded(1), message="the delivery to be recorded")

        deliveries = await _json(settings, "deliveries", "list", "--endpoint", endpoint_id,
                                 "--status", "delivered")  # fmt: skip
        assert isinstance(deliveries, list)
        [delivery] = deliveries
        again = await _json(settings, "redeliver", delivery["id"])
        assert isinstance(again, dict) and again["chain"] == 2
        await eventually(lambda: recorded(2), message="the redelivery to be recorded")
        assert len(rx.received) == 2
        assert rx.received[1].webhook_id == delivery["id"]
        shown = await _json(settings, "deliveries", "show", delivery["id"])
        assert isinstance(shown, dict) and [a["chain"] for a in shown["attempts_log"]] == [1, 2]

        rotated = await _json(settings, "endpoints", "rotate-secret", endpoint_id)
        assert isinstance(rotated, dict) and rotated["secret"] != created["secret"]
        off = await _json(settings, "endpoints", "set", endpoint_id, "--enabled", "false")
        assert isinstance(off, dict) and off["enabled"] is False
        removed = await _json(settings, "endpoints", "remove", endpoint_id)
        assert isinstance(removed, dict) and removed["id"] == endpoint_id
        missing = await polaris(settings, "endpoints", "show", endpoint_id)
        assert missing.returncode != 0
