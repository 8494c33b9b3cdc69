"""``polaris notifications``: the operators' inbox from a real CLI process."""

from __future__ import annotations

import json
import uuid

import pytest

from config.settings import Settings
from db.engine import SessionFactory
from db.notifications import notify
from tests.fleet.test_cli import polaris

pytestmark = pytest.mark.timeout(180)


async def test_list_read_and_archive_the_operators_inbox(
    base_settings: Settings, session_factory: SessionFactory
) -> None:
    async with session_factory.begin() as db:
        note = await notify(
            db,
            audience="operators",
            kind="charger.offline",
            dedupe_key=f"cli:{uuid.uuid4().hex}",
            title="Charger CB-CLI offline for over 15 min",
            data={"charge_box_id": "CB-CLI"},
        )
    assert note is not None

    listed = await polaris(base_settings, "notifications", "list", "--unread", "--json")
    assert listed.returncode == 0, listed.stderr
    assert note in [n["id"] for n in json.loads(listed.stdout)]
    table = await polaris(base_settings, "notifications", "list")
    assert "CB-CLI offline" in table.stdout

    read = await polaris(base_settings, "notifications", "read", str(note), "--json")
    assert read.returncode == 0, read.stderr
    assert json.loads(read.stdout)["read_at"] is not None
    archived = await polaris(base_settings, "notifications", "archive", str(note), "--json")
    assert json.loads(archived.stdout)["archived_at"] is not None
    after = await polaris(base_settings, "notifications", "list", "--archived", "--json")
    assert note in [n["id"] for n in json.loads(after.stdout)]

    missing = await polaris(base_settings, "notifications", "read", "999999999", "--json")
    assert missing.returncode != 0 and json.loads(missing.stdout)["error"] == "NOT_FOUND"
    bad = await polaris(base_settings, "notifications", "list", "--limit", "0", "--json")
    assert bad.returncode != 0 and json.loads(bad.stdout)["error"] == "VALIDATION_FAILED"
    everything = await polaris(base_settings, "notifications", "read", "--all", "--json")
    assert everything.returncode == 0 and "marked_read" in json.loads(everything.stdout)
