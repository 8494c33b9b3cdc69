"""``polaris cards`` as a subprocess with the platform's environment: every ``--json`` output
parses, ``link`` waits for the saga's answer (a real worker, the real auth service, a Lago
sandbox), and errors exit non-zero with the error document."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.worker import Worker

from config.settings import Settings
from tests.identity.conftest import unique_email
from tests.sandbox.conftest import RunningSandbox

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
        "POLARIS_DATA_DIR": str(settings.data_dir),
        "POLARIS_TEMPORAL_ADDRESS": settings.temporal_address,
        "POLARIS_TEMPORAL_TASK_QUEUE": settings.temporal_task_queue,
        # Not the published development values: the CLI refuses those outside a dev stack.
        "POLARIS_LAGO_API_KEY": "cards-cli-test-key",
        "POLARIS_LAGO_WEBHOOK_SECRET": "cards-cli-test-secret",
        "POLARIS_LOG_LEVEL": "WARNING",
    }
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "cli.main", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )


async def ok_json(settings: Settings, *args: str) -> Any:
    done = await polaris(settings, *args, "--json")
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return json.loads(done.stdout)


async def test_cards_commands_add_change_link_and_unlink(
    identity_settings: Settings, worker: Worker, lago_sandbox: RunningSandbox
) -> None:
    suffix = uuid.uuid4().hex[:8].upper()
    parent, child = f"CLI{suffix}", f"CLI{suffix}C"

    made = await ok_json(identity_settings, "cards", "add", parent, "--label", "Depot")
    assert made["id_tag"] == parent and made["label"] == "Depot" and made["blocked"] is False
    made = await ok_json(
        identity_settings,
        "cards", "add", child, "--parent", parent, "--expires", "2030-01-01",
        "--max-concurrent", "2",
    )  # fmt: skip
    assert made["parent_id_tag"] == parent and made["max_concurrent_sessions"] == 2
    assert made["expires_at"].startswith("2030-01-01T00:00:00")

    changed = await ok_json(
        identity_settings, "cards", "set", child, "--blocked", "true", "--expires", ""
    )
    assert changed["blocked"] is True and changed["expires_at"] is None
    assert changed["label"] is None and changed["max_concurrent_sessions"] == 2

    email = unique_email("cli-link")
    linked = await ok_json(
        identity_settings, "cards", "link", parent, "--email", email, "--name", "Grace"
    )
    assert linked["status"] == "linked" and linked["user_created"] and linked["invited"]
    assert lago_sandbox.api("GET", f"/customers/{linked['public_id']}").status_code == 200
    human = await polaris(identity_settings, "cards", "link", child, "--email", email)
    assert human.returncode == 0, human.stderr
    assert f"card {child} linked to {email}" in human.stdout

    shown = await ok_json(identity_settings, "cards", "show", parent)
    assert shown["email"] == email and shown["children"] == [child]
    listed = await ok_json(identity_settings, "cards", "list", "--search", suffix)
    assert {c["id_tag"]: c["email"] for c in listed} == {parent: email, child: email}
    table = await polaris(identity_settings, "cards", "list", "--search", suffix)
    assert table.returncode == 0 and parent in table.stdout and email in table.stdout

    # Another driver: refused unless the operator confirms the reassignment.
    other = unique_email("cli-other")
    refused = await polaris(identity_settings, "cards", "link", parent, "--email", other, "--json")
    assert refused.returncode == 5, refused.stderr
    assert json.loads(refused.stdout)["error"] == "REASSIGN_REQUIRED"

    unlinked = await ok_json(identity_settings, "cards", "unlink", parent)
    assert unlinked["cascaded_to"] == [child] and len(unlinked["unlinked_mappings"]) == 2
    again = await polaris(identity_settings, "cards", "unlink", parent)
    assert again.returncode == 5 and "no active link" in again.stderr

    exists = await polaris(identity_settings, "cards", "add", parent, "--json")
    assert exists.returncode == 5 and json.loads(exists.stdout)["error"] == "CARD_EXISTS"
    missing = await polaris(identity_settings, "cards", "show", "NOPE-0", "--json")
    assert missing.returncode == 4 and json.loads(missing.stdout)["error"] == "NOT_FOUND"
    too_long = await polaris(identity_settings, "cards", "add", "X" * 21, "--json")
    assert too_long.returncode == 2
    assert json.loads(too_long.stdout)["issues"][0]["path"] == ["id_tag"]
    bad_date = await polaris(identity_settings, "cards", "set", child, "--expires", "soon")
    assert bad_date.returncode == 2 and "ISO 8601" in bad_date.stderr
