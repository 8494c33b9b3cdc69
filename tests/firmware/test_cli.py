"""`polaris firmware …` and `polaris diagnostics …` as real processes against the real stack."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.firmware.conftest import IMAGE, Stack, charger_row, seed_chargers, sha256
from tests.helpers import eventually, process_secrets

# A hang guard, not a measurement: each `polaris` process imports the whole CLI (seconds of
# CPU), which a loaded machine stretches to tens of seconds per command.
pytestmark = pytest.mark.timeout(600)


async def polaris(stack: Stack, *args: str) -> tuple[int, Any]:
    settings = stack.settings
    env = {
        **os.environ,
        "POLARIS_ENV": "test",
        "POLARIS_DATA_DIR": str(settings.data_dir),
        "POLARIS_DATABASE_URL": settings.require_database_url(),
        "POLARIS_TEMPORAL_ADDRESS": settings.require_temporal_address(),
        "POLARIS_TEMPORAL_TASK_QUEUE": settings.temporal_task_queue,
        "POLARIS_FILES_DIR": str(settings.files_root),
        **process_secrets(),
    }
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    try:
        return done.returncode, json.loads(done.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"not JSON: {done.stdout!r} {done.stderr!r}") from None


async def test_operator_updates_a_charger_and_fetches_diagnostics_from_the_cli(
    stack: Stack, tmp_path: Path
) -> None:
    image_file = tmp_path / "acme-7.0.0.bin"
    image_file.write_bytes(IMAGE)
    code, image = await polaris(
        stack, "firmware", "upload", str(image_file), "--version", "7.0.0", "--json"
    )
    assert code == 0 and image["sha256"] == sha256(IMAGE)
    code, listed = await polaris(stack, "firmware", "list", "--json")
    assert image["id"] in [row["id"] for row in listed]

    online, offline = await seed_chargers(stack.sf, 2)
    sim = stack.charger(online, new_version="7.0.0")
    await sim.connect()
    code, refused = await polaris(
        stack, "firmware", "update", offline, "--firmware", image["id"], "--json"
    )
    assert code == 3 and refused["error"] == "CHARGER_OFFLINE"
    code, update = await polaris(
        stack, "firmware", "update", online, "--firmware", image["id"], "--json"
    )
    assert code == 0 and update["status"] == "sent"

    async def on_new_version() -> bool:
        return (await charger_row(stack.sf, online)).firmware_version == "7.0.0"

    await eventually(on_new_version, message="the charger on 7.0.0")
    code, shown = await polaris(stack, "firmware", "show", online, "--json")
    assert shown["firmware_status"] == "Installed" and shown["firmware_version"] == "7.0.0"

    code, requested = await polaris(stack, "diagnostics", "request", online, "--json")
    assert code == 0 and requested["charge_box_id"] == online

    async def listed_upload() -> list[dict[str, Any]]:
        code, rows = await polaris(stack, "diagnostics", "list", online, "--json")
        assert code == 0 and rows[0]["status"] == "uploaded"
        return rows

    rows = await eventually(listed_upload, message="the upload listed")
    assert rows[0]["file_name"] == f"diag-{online}.log"


async def test_campaign_from_the_cli(stack: Stack, tmp_path: Path) -> None:
    image_file = tmp_path / "fw.bin"
    image_file.write_bytes(IMAGE)
    _, image = await polaris(
        stack, "firmware", "upload", str(image_file), "--version", "8", "--json"
    )
    ids = await seed_chargers(stack.sf, 2)
    for cb in ids:
        await stack.charger(cb, new_version="8").connect()
    code, started = await polaris(
        stack,
        "firmware", "campaign", "start",
        "--firmware", image["id"],
        "--chargers", ",".join(ids),
        "--wave-size", "1", "--pause", "3600", "--max-failures", "0",
        "--poll-interval", "0.5", "--json",
    )  # fmt: skip
    assert code == 0 and started["state"] == "running"

    async def first_wave() -> bool:
        _, status = await polaris(stack, "firmware", "campaign", "status", started["id"], "--json")
        return status["waves_done"] == 1

    await eventually(first_wave, timeout=90, interval=1, message="the first wave")
    code, halting = await polaris(
        stack, "firmware", "campaign", "halt", started["id"], "--reason", "enough", "--json"
    )
    assert code == 0 and halting["id"] == started["id"]

    async def ended() -> dict[str, Any] | None:
        _, status = await polaris(stack, "firmware", "campaign", "status", started["id"], "--json")
        return status if status["state"] == "halted" else None

    end = await eventually(ended, timeout=60, interval=1, message="the halt")
    assert end["succeeded"] == ids[:1] and end["halted_reason"] == "enough"
    code, again = await polaris(stack, "firmware", "campaign", "halt", started["id"], "--json")
    assert code == 5 and again["error"] == "CONFLICT"
