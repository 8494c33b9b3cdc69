"""Firmware campaigns over several real charge points: waves, a failing wave that halts the
campaign at its threshold, an operator's halt, and a worker restarted mid-campaign."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from db.firmware_models import FirmwareCampaign
from services import firmware
from services import firmware_campaigns as campaigns
from services.errors import Conflict
from tests.e2e.processes import polaris_process
from tests.firmware.conftest import ADMIN, Stack, charger_row, image_chunks, seed_chargers
from tests.helpers import eventually, process_secrets

pytestmark = pytest.mark.timeout(240)

HISTORIES = Path(__file__).resolve().parent.parent / "histories"


async def _record(stack: Stack, workflow_id: str, name: str) -> None:
    """``POLARIS_RECORD_HISTORIES=1`` keeps the history for tests/workflows/test_replay.py."""
    if os.environ.get("POLARIS_RECORD_HISTORIES"):
        client = await stack.ctx.temporal()
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        (HISTORIES / name).write_text(history.to_json())


async def _image(stack: Stack, version: str = "2.0.0") -> str:
    view = await firmware.upload_firmware(
        stack.ctx, ADMIN, name=f"fw-{version}.bin", version=version, body=image_chunks()
    )
    return str(view["id"])


async def _finished(stack: Stack, campaign_id: str) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        view = await campaigns.campaign_status(stack.ctx, ADMIN, campaign_id)
        return view if view["state"] != "running" else None

    return await eventually(done, timeout=180, interval=0.5, message="the campaign's end")


async def test_failing_wave_halts_the_campaign_at_its_threshold(stack: Stack) -> None:
    firmware_id = await _image(stack)
    ids = await seed_chargers(stack.sf, 5)
    behaviours = ["ok", "ok", "download_failed", "silent", "ok"]
    sims = [stack.charger(cb, behaviour=b) for cb, b in zip(ids, behaviours, strict=True)]
    for sim in sims:
        await sim.connect()

    view = await campaigns.start_campaign(
        stack.ctx,
        ADMIN,
        firmware_id=firmware_id,
        chargers=ids,
        wave_size=2,
        pause_s=0,
        max_failures=1,
        wave_deadline_s=30,
        poll_interval_s=0.5,
    )
    assert view["state"] == "running" and view["chargers"] == ids
    end = await _finished(stack, view["id"])

    assert end["state"] == "halted"
    assert "2 failures" in end["halted_reason"]
    assert end["waves_done"] == 2
    assert sorted(end["succeeded"]) == sorted(ids[:2])
    assert end["failed"] == {ids[2]: "DownloadFailed", ids[3]: "no answer by the deadline"}
    # The third wave never started: its charger was sent nothing.
    assert sims[4].update_requests == []
    for cb in ids[:2]:
        assert (await charger_row(stack.sf, cb)).firmware_version == "2.0.0"
    for cb in ids[2:]:
        assert (await charger_row(stack.sf, cb)).firmware_version == "1.0.0"
    with pytest.raises(Conflict):
        await campaigns.halt_campaign(stack.ctx, ADMIN, view["id"])
    await _record(stack, view["workflow_id"], "firmware_campaign_threshold_v1.json")


async def test_operator_halts_a_campaign_between_waves(stack: Stack) -> None:
    firmware_id = await _image(stack, "2.1.0")
    ids = await seed_chargers(stack.sf, 3)
    sims = [stack.charger(cb, new_version="2.1.0") for cb in ids]
    for sim in sims:
        await sim.connect()
    view = await campaigns.start_campaign(
        stack.ctx,
        ADMIN,
        firmware_id=firmware_id,
        chargers=ids,
        wave_size=1,
        pause_s=3600,  # the halt must cut the pause short
        wave_deadline_s=60,
        poll_interval_s=0.5,
    )

    async def first_wave_done() -> bool:
        shown = await campaigns.campaign_status(stack.ctx, ADMIN, view["id"])
        return shown["waves_done"] == 1

    await eventually(first_wave_done, timeout=60, message="the first wave")
    live = (await campaigns.campaign_status(stack.ctx, ADMIN, view["id"]))["live"]
    assert live["succeeded"] == [ids[0]] and live["state"] == "running"
    await campaigns.halt_campaign(stack.ctx, ADMIN, view["id"], "maintenance window over")
    end = await _finished(stack, view["id"])
    assert end["state"] == "halted"
    assert end["halted_reason"] == "maintenance window over"
    assert sims[1].update_requests == [] and sims[2].update_requests == []
    await _record(stack, view["workflow_id"], "firmware_campaign_halt_v1.json")


async def test_campaign_survives_a_worker_restart(stack: Stack) -> None:
    firmware_id = await _image(stack, "3.0.0")
    ids = await seed_chargers(stack.sf, 4)
    hold = asyncio.Event()
    sims = [stack.charger(cb, new_version="3.0.0", hold=hold) for cb in ids]
    for sim in sims:
        await sim.connect()
    view = await campaigns.start_campaign(
        stack.ctx,
        ADMIN,
        firmware_id=firmware_id,
        chargers=ids,
        wave_size=2,
        pause_s=1,
        max_failures=0,
        wave_deadline_s=120,
        poll_interval_s=0.5,
    )
    # The first wave is installing when the worker goes away.
    await eventually(
        lambda: all(s.statuses[-1:] == ["Installing"] for s in sims[:2]),
        timeout=60,
        message="the first wave installing",
    )
    await stack.worker.stop()
    # No worker to answer the query: the row answers.
    paused = await campaigns.campaign_status(stack.ctx, ADMIN, view["id"])
    assert paused["state"] == "running" and paused["live"] is None
    hold.set()
    await eventually(
        lambda: all(s.boots == 2 for s in sims[:2]), timeout=60, message="wave 1 rebooted"
    )
    stack.worker.start()
    end = await _finished(stack, view["id"])

    assert stack.worker.starts == 2
    assert end["state"] == "completed", end
    assert sorted(end["succeeded"]) == sorted(ids) and end["failed"] == {}
    assert end["waves_done"] == 2
    for cb in ids:
        assert (await charger_row(stack.sf, cb)).firmware_version == "3.0.0"
    async with stack.sf() as db:
        row = await db.get(FirmwareCampaign, view["id"])
    assert row is not None and row.state == "completed"


async def test_long_campaign_continues_as_new_between_waves(stack: Stack) -> None:
    firmware_id = await _image(stack, "4.0.0")
    ids = await seed_chargers(stack.sf, 3)
    for cb in ids:
        await stack.charger(cb, new_version="4.0.0").connect()
    view = await campaigns.start_campaign(
        stack.ctx,
        ADMIN,
        firmware_id=firmware_id,
        chargers=ids,
        wave_size=1,
        pause_s=0,
        wave_deadline_s=60,
        poll_interval_s=0.5,
        history_limit=1,  # every wave boundary hands over to a new run
    )
    end = await _finished(stack, view["id"])
    assert end["state"] == "completed"
    assert end["succeeded"] == ids and end["waves_done"] == 3
    client = await stack.ctx.temporal()

    async def runs() -> list[str]:
        found = [
            str(w.status.name if w.status else None)
            async for w in client.list_workflows(f'WorkflowId="{view["workflow_id"]}"')
        ]
        assert len(found) == 3, found
        return found

    statuses = await eventually(runs, message="three runs")
    assert sorted(statuses) == ["COMPLETED", "CONTINUED_AS_NEW", "CONTINUED_AS_NEW"]


async def test_campaign_survives_a_killed_worker_process(stack: Stack, tmp_path: Path) -> None:
    """The worker as a real `polaris worker` process, killed with SIGKILL mid-wave."""
    await stack.worker.stop()
    settings = stack.settings
    env = {
        "POLARIS_ENV": "test",
        "POLARIS_DATA_DIR": str(tmp_path / "worker-data"),
        "POLARIS_DATABASE_URL": settings.require_database_url(),
        "POLARIS_TEMPORAL_ADDRESS": settings.require_temporal_address(),
        "POLARIS_TEMPORAL_TASK_QUEUE": settings.temporal_task_queue,
        "POLARIS_PUBLIC_BASE_URL": settings.public_base,
        "POLARIS_AUTH_URL": "http://127.0.0.1:9",
        "POLARIS_LAGO_API_URL": "http://127.0.0.1:9",
        **process_secrets(),
    }
    worker = polaris_process("worker", "worker", tmp_path, env)
    worker.start()
    try:
        firmware_id = await _image(stack, "5.0.0")
        ids = await seed_chargers(stack.sf, 4)
        hold = asyncio.Event()
        sims = [stack.charger(cb, new_version="5.0.0", hold=hold) for cb in ids]
        for sim in sims:
            await sim.connect()
        view = await campaigns.start_campaign(
            stack.ctx,
            ADMIN,
            firmware_id=firmware_id,
            chargers=ids,
            wave_size=2,
            pause_s=0,
            wave_deadline_s=120,
            poll_interval_s=0.5,
        )
        await eventually(
            lambda: all(s.statuses[-1:] == ["Installing"] for s in sims[:2]),
            timeout=60,
            message="the first wave installing",
        )
        worker.kill(signal.SIGKILL)
        hold.set()
        worker.start()
        end = await _finished(stack, view["id"])
    finally:
        worker.stop()
    assert end["state"] == "completed", (end, worker.output()[-3000:])
    assert sorted(end["succeeded"]) == sorted(ids)
    for cb in ids:
        assert (await charger_row(stack.sf, cb)).firmware_version == "5.0.0"
