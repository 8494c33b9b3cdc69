"""``polaris chargers|sites|tariffs`` as a subprocess with the platform's environment: every
``--json`` output parses, errors exit non-zero with the error document, and a charger added by
the CLI connects to a real gateway with the password the CLI printed."""

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
from ocpp.v16 import call

from config.settings import Settings
from gateway.main import Gateway
from tests.gateway.conftest import charger_session
from tests.gateway.test_charger_auth import basic, handshake_status

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
        # Not the published development values: the CLI refuses those outside a dev stack.
        "POLARIS_LAGO_API_KEY": "fleet-cli-test-key",
        "POLARIS_LAGO_WEBHOOK_SECRET": "fleet-cli-test-secret",
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


async def ok_json(settings: Settings, *args: str) -> Any:
    done = await polaris(settings, *args, "--json")
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return json.loads(done.stdout)


async def test_fleet_commands_answer_json_and_their_charger_connects(
    gateway: Gateway, gw_settings: Settings
) -> None:
    suffix = uuid.uuid4().hex[:8].upper()
    cb, site, code = f"CLI-{suffix}", f"Yard {suffix}", f"CLI-T-{suffix}"

    made = await ok_json(
        gw_settings,
        "sites", "add", site, "--lat", "48.85", "--lon", "2.35", "--timezone", "Europe/Paris",
    )  # fmt: skip
    assert made["name"] == site and made["timezone"] == "Europe/Paris"
    tariff = await ok_json(
        gw_settings, "tariffs", "add", code, "--currency", "EUR", "--kwh-minor", "30"
    )
    assert tariff["current"]["price_per_kwh_minor"] == 30
    added = await ok_json(
        gw_settings,
        "chargers", "add", cb, "--connectors", "2", "--site", site, "--tariff", code,
        "--label", "Bay 9",
    )  # fmt: skip
    password = added["password"]
    assert added["charger"]["site"] == site and added["charger"]["tariff"] == code

    async with charger_session(gateway, cb, password=password) as cp:
        await cp.call(call.BootNotification(charge_point_vendor="V", charge_point_model="M"))
        shown = await ok_json(gw_settings, "chargers", "show", cb)
        assert shown["connected"] is True and shown["vendor"] == "V"
    assert await handshake_status(gateway, cb, authorization=basic(cb, "wrong")) == 401

    listed = await ok_json(gw_settings, "chargers", "list")
    assert cb in [c["charge_box_id"] for c in listed]
    changed = await polaris(
        gw_settings, "chargers", "set", cb, "--allow-unauthenticated", "true", "--tariff", ""
    )
    assert changed.returncode == 0, changed.stderr
    assert "WARNING" in changed.stderr and "ANYONE" in changed.stderr
    assert "tariff: -" in changed.stdout
    plugs = await ok_json(
        gw_settings,
        "chargers", "set", cb, "--connector-type", "1=CCS2", "--connector-max-power-w",
        "1=150000", "--connector-type", "2=Type2",
    )  # fmt: skip
    by_id = {c["connector_id"]: c for c in plugs["charger"]["connectors"]}
    assert (by_id[1]["connector_type"], by_id[1]["max_power_w"]) == ("CCS2", 150000)
    assert (by_id[2]["connector_type"], by_id[2]["max_power_w"]) == ("Type2", None)
    cleared = await ok_json(gw_settings, "chargers", "set", cb, "--connector-max-power-w", "1=")
    by_id = {c["connector_id"]: c for c in cleared["charger"]["connectors"]}
    assert (by_id[1]["connector_type"], by_id[1]["max_power_w"]) == ("CCS2", None)
    shown_plugs = await polaris(gw_settings, "chargers", "show", cb)
    assert "(CCS2)" in shown_plugs.stdout and "(Type2)" in shown_plugs.stdout
    wrong_plug = await polaris(
        gw_settings, "chargers", "set", cb, "--connector-type", "1=Type9", "--json"
    )
    assert wrong_plug.returncode == 2
    assert json.loads(wrong_plug.stdout)["error"] == "VALIDATION_FAILED"
    rotated = await ok_json(gw_settings, "chargers", "password", cb)
    assert rotated["pending"] is True and rotated["password"] != password
    versioned = await ok_json(gw_settings, "tariffs", "version", code, "--kwh-minor", "35")
    assert [v["version"] for v in versioned["versions"]] == [1, 2]
    assert code in [t["code"] for t in await ok_json(gw_settings, "tariffs", "list")]
    assert (await ok_json(gw_settings, "tariffs", "show", code))["code"] == code
    assert site in [s["name"] for s in await ok_json(gw_settings, "sites", "list")]
    assert cb in (await ok_json(gw_settings, "sites", "show", site))["charge_box_ids"]
    moved = await ok_json(gw_settings, "sites", "set", site, "--timezone", "UTC")
    assert moved["timezone"] == "UTC"

    unknown = f"CLI-NEW-{suffix}"
    assert await handshake_status(gateway, unknown) == 404
    pending = await ok_json(gw_settings, "chargers", "pending")
    assert unknown in [p["charge_box_id"] for p in pending]

    removed = await ok_json(gw_settings, "chargers", "remove", cb)
    assert removed["decommissioned_at"]
    assert cb not in [c["charge_box_id"] for c in await ok_json(gw_settings, "chargers", "list")]
    assert cb in [
        c["charge_box_id"] for c in await ok_json(gw_settings, "chargers", "list", "--all")
    ]

    # Errors: exit codes by kind, the error document on stdout with --json.
    missing = await polaris(gw_settings, "chargers", "show", "NOPE-0", "--json")
    assert missing.returncode == 4 and json.loads(missing.stdout)["error"] == "NOT_FOUND"
    bad = await polaris(gw_settings, "chargers", "add", "bad/id", "--connectors", "0", "--json")
    assert bad.returncode == 2
    assert json.loads(bad.stdout)["error"] == "VALIDATION_FAILED"
    again = await polaris(gw_settings, "sites", "add", site, "--json")
    assert again.returncode == 5 and json.loads(again.stdout)["error"] == "CONFLICT"
    zone = await polaris(gw_settings, "sites", "add", "x" + suffix, "--timezone", "Moon/Base")
    assert zone.returncode == 2 and "timezone" in zone.stderr
