"""The operations family over the real API (real auth service, live role checks) and the real
``polaris`` command as a subprocess, against a real gateway and charge point."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from config.settings import Settings
from db.engine import SessionFactory
from gateway.main import Gateway
from services import operations
from services.context import ServiceContext
from tests.fixtures.auth import AuthService
from tests.gateway.conftest import seed_charger
from tests.helpers import process_secrets
from tests.identity.conftest import Person, person
from tests.identity.real_api import real_api
from tests.operations.conftest import operations_charger

# A hang guard, not a measurement: each `polaris` process imports the whole CLI (seconds of
# CPU), which a loaded machine stretches to tens of seconds per command.
pytestmark = pytest.mark.timeout(600)

REPO = Path(__file__).resolve().parents[2]


def api_settings(ops_ctx: ServiceContext, auth_service: AuthService) -> Settings:
    return ops_ctx.settings.model_copy(
        update={
            "auth_url": auth_service.base_url,
            "auth_internal_url": auth_service.internal_url,
            "auth_internal_token": None,
            "auth_internal_token_api": SecretStr(auth_service.internal_tokens["api"]),
        }
    )


async def test_operations_over_the_api(
    gateway: Gateway,
    session_factory: SessionFactory,
    ops_ctx: ServiceContext,
    engine: AsyncEngine,
    temporal_client: Client,
    auth_service: AuthService,
) -> None:
    cb = await seed_charger(session_factory)
    admin = await person(auth_service, "ops-admin", role="admin")
    operator = await person(auth_service, "ops-operator", role="operator")
    driver = await person(auth_service, "ops-driver")
    settings = api_settings(ops_ctx, auth_service)
    async with real_api(settings, engine, session_factory, temporal_client) as api:
        http = api.client
        await _while_connected(http, gateway, session_factory, cb, admin, operator, driver)
        # Offline: 409 CHARGER_OFFLINE at once, and the row says so.
        offline = await http.post(
            f"/api/v1/chargers/{cb}/operations/ClearCache", json={}, headers=admin.headers
        )
        assert offline.status_code == 409 and offline.json()["error"] == "CHARGER_OFFLINE"
        # Live-checked: an operator demoted a moment ago is refused with the same token.
        demoted = await http.post(
            f"/api/v1/users/{operator.user_id}/role",
            json={"role": "customer"},
            headers=admin.headers,
        )
        assert demoted.status_code == 200, demoted.text
        refused = await http.get("/api/v1/operations", headers=operator.headers)
        assert refused.status_code == 403
    [latest, *_] = await operations.list_operations(ops_ctx, charge_box_id=cb)
    assert latest["status"] == "charger_offline"


async def _while_connected(
    http: httpx.AsyncClient,
    gateway: Gateway,
    session_factory: SessionFactory,
    cb: str,
    admin: Person,
    operator: Person,
    driver: Person,
) -> None:
    async with operations_charger(gateway, session_factory, cb) as cp:
        base = f"/api/v1/chargers/{cb}"

        # Drivers: 403 on every route of the family.
        for method, path in (
            ("POST", f"{base}/operations/ClearCache"),
            ("GET", "/api/v1/operations"),
            ("GET", "/api/v1/operations/00000000-0000-0000-0000-000000000000"),
            ("GET", f"{base}/configuration"),
        ):
            answer = await http.request(method, path, headers=driver.headers, json={})
            assert answer.status_code == 403, (path, answer.text)

        # Dry run: the frame, nothing sent.
        dry = await http.post(
            f"{base}/operations/Reset?dry_run=true", json={"type": "Soft"}, headers=admin.headers
        )
        assert dry.status_code == 200, dry.text
        assert dry.json()["frame"][2:] == ["Reset", {"type": "Soft"}]
        assert cp.received == []

        # Schema violation: 422 with issues, nothing sent.
        bad = await http.post(
            f"{base}/operations/Reset", json={"type": "Harder"}, headers=admin.headers
        )
        assert bad.status_code == 422 and bad.json()["issues"][0]["path"] == ["type"]
        unknown = await http.post(f"{base}/operations/Heartbeat", json={}, headers=admin.headers)
        assert unknown.status_code == 404
        assert cp.received == []

        # The real thing.
        sent = await http.post(
            f"{base}/operations/ChangeConfiguration",
            json={"key": "HeartbeatInterval", "value": "60"},
            headers=admin.headers,
        )
        assert sent.status_code == 200, sent.text
        op = sent.json()
        assert op["status"] == "answered" and op["response"] == {"status": "Accepted"}
        assert op["requested_by"] == f"user:{admin.user_id}"
        assert cp.received[-1][1:] == (
            "ChangeConfiguration",
            {"key": "HeartbeatInterval", "value": "60"},
        )

        # The operator: allowed GetConfiguration, denied Reset by the default allow-list.
        config = await http.post(f"{base}/operations/GetConfiguration", headers=operator.headers)
        assert config.status_code == 200 and config.json()["status"] == "answered", config.text
        denied = await http.post(
            f"{base}/operations/Reset", json={"type": "Hard"}, headers=operator.headers
        )
        assert denied.status_code == 403 and denied.json()["error"] == "FORBIDDEN"
        assert [a for _, a, _ in cp.received] == ["ChangeConfiguration", "GetConfiguration"]

        shown = await http.get(f"{base}/configuration", headers=operator.headers)
        assert shown.status_code == 200
        assert {k["key"] for k in shown.json()["keys"]} == {"HeartbeatInterval", "AuthorizationKey"}

        listed = await http.get(f"/api/v1/operations?charger={cb}", headers=admin.headers)
        assert [o["action"] for o in listed.json()] == ["GetConfiguration", "ChangeConfiguration"]
        one = await http.get(f"/api/v1/operations/{op['id']}", headers=admin.headers)
        assert one.json()["id"] == op["id"]
        answered = await http.get(
            f"/api/v1/operations?charger={cb}&status=rejected", headers=admin.headers
        )
        assert answered.json() == []


async def polaris(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as a subprocess, off the event loop (the charger keeps answering meanwhile)."""
    env = {
        **os.environ,
        **process_secrets(),
        "PYTHONPATH": str(REPO),
        "POLARIS_ENV": "test",
        "POLARIS_DATA_DIR": str(settings.data_dir),
        "POLARIS_DATABASE_URL": settings.require_database_url(),
        "POLARIS_TEMPORAL_ADDRESS": settings.require_temporal_address(),
        "POLARIS_TEMPORAL_TASK_QUEUE": settings.temporal_task_queue,
        "POLARIS_LOG_LEVEL": "WARNING",
    }
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


async def test_operations_from_the_cli(
    gateway: Gateway,
    session_factory: SessionFactory,
    ops_ctx: ServiceContext,
    tmp_path: Path,
) -> None:
    cb = await seed_charger(session_factory)
    settings = ops_ctx.settings
    async with operations_charger(gateway, session_factory, cb) as cp:
        # Fields typed by the OCPP schema: connectorId is an integer, key a list.
        done = await polaris(
            settings, "chargers", "op", cb, "TriggerMessage",
            "requestedMessage=StatusNotification", "connectorId=1", "--json",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["status"] == "answered"
        assert cp.received[-1][2] == {"requestedMessage": "StatusNotification", "connectorId": 1}

        done = await polaris(
            settings, "chargers", "op", cb, "GetConfiguration", "key=HeartbeatInterval", "--json"
        )
        assert done.returncode == 0, done.stderr
        assert cp.received[-1][2] == {"key": ["HeartbeatInterval"]}

        # A nested object from a file.
        profile = tmp_path / "profile.json"
        profile.write_text(json.dumps({
            "chargingProfileId": 9, "stackLevel": 1,
            "chargingProfilePurpose": "TxDefaultProfile", "chargingProfileKind": "Relative",
            "chargingSchedule": {"chargingRateUnit": "A",
                                 "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0}]},
        }))  # fmt: skip
        done = await polaris(
            settings, "chargers", "op", cb, "SetChargingProfile", "connectorId=1",
            f"csChargingProfiles=@{profile}", "--json",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert cp.received[-1][2]["csChargingProfiles"]["chargingProfileId"] == 9

        # Dry run prints the frame; nothing reaches the charger.
        before = len(cp.received)
        done = await polaris(
            settings, "chargers", "op", cb, "Reset", "type=Hard", "--dry-run", "--json"
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["frame"][2:] == ["Reset", {"type": "Hard"}]

        # Invalid: exit 2 with the issue, nothing sent.
        done = await polaris(settings, "chargers", "op", cb, "Reset", "type=Harder")
        assert done.returncode == 2 and "type" in done.stderr
        done = await polaris(settings, "chargers", "op", cb, "UnlockConnector", "connectorId=one")
        assert done.returncode == 2 and "not an integer" in done.stderr

        # Refused by the charger: exit 1, the answer printed.
        cp.mode = "Rejected"
        done = await polaris(settings, "chargers", "op", cb, "Reset", "type=Soft", "--json")
        assert done.returncode == 1 and json.loads(done.stdout)["status"] == "rejected"
        assert len(cp.received) == before + 1

        listed = await polaris(settings, "operations", "list", "--charger", cb, "--json")
        assert listed.returncode == 0, listed.stderr
        rows = json.loads(listed.stdout)
        assert [r["action"] for r in rows] == [
            "Reset", "SetChargingProfile", "GetConfiguration", "TriggerMessage",
        ]  # fmt: skip
        assert all(r["requested_by"].startswith("cli:") for r in rows)
        shown = await polaris(settings, "operations", "show", rows[0]["id"])
        assert shown.returncode == 0 and "rejected" in shown.stdout

        config = await polaris(settings, "chargers", "config", cb, "--json")
        assert config.returncode == 0, config.stderr
        assert json.loads(config.stdout)["full"] is False

    # Offline: a clear message and a non-zero exit, at once.
    done = await polaris(settings, "chargers", "op", cb, "ClearCache")
    assert done.returncode == 3
    assert "not connected" in done.stderr and "nothing was sent" in done.stderr
