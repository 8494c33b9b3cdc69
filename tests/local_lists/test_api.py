"""The local-list routes and the card routes' triggers, through the real API (real auth
service, real worker, real gateway, a real ``ocpp`` 1.6 charge point)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from temporalio.client import Client

from config.settings import Settings
from db.engine import SessionFactory
from db.local_list_models import ChargerLocalList
from gateway.main import Gateway
from tests.fixtures.auth import AuthService
from tests.gateway.conftest import seed_charger
from tests.helpers import eventually
from tests.identity.conftest import (  # noqa: F401  (fixtures used by this module)
    api,
    identity_settings,
    lago_sandbox,
    person,
    seed_card,
    worker,
)
from tests.local_lists.conftest import ListCharger, charge_point

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
async def gateway(identity_settings: Settings) -> AsyncIterator[Gateway]:  # noqa: F811
    settings = identity_settings.model_copy(
        update={"gateway_port": 0, "gateway_instance": f"gw-{uuid.uuid4().hex[:10]}"}
    )
    gw = Gateway(settings, relay_poll_interval_s=0.5)
    await gw.start()
    try:
        await asyncio.wait_for(gw.link.wait(), 30)
        yield gw
    finally:
        await gw.stop()


async def settled(sf: SessionFactory, charge_box_id: str, version: int) -> None:
    async def done() -> bool:
        async with sf() as db:
            found = await db.get(ChargerLocalList, charge_box_id)
        assert found is not None and found.list_version == version
        assert found.sync_done >= found.sync_requested
        assert found.clear_cache_done >= found.clear_cache_requested
        return found.last_sync_status is not None

    await eventually(done, timeout=60, message=f"list version {version} recorded")


async def test_card_routes_and_report_lost_reach_a_connected_charger(
    api: httpx.AsyncClient,  # noqa: F811
    worker: object,  # noqa: F811
    gateway: Gateway,
    auth_service: AuthService,
    session_factory: SessionFactory,
    temporal_client: Client,
) -> None:
    admin = await person(auth_service, "ll-admin", role="admin")
    driver = await person(auth_service, "ll-driver")
    cb = await seed_charger(session_factory)
    async with charge_point(gateway, cb) as cp:
        # An operator blocks a driver's card: the charger gets it Blocked.
        tag = await seed_card(session_factory, owner=driver)
        blocked = await api.patch(
            f"/api/v1/cards/{tag}", json={"blocked": True}, headers=admin.headers
        )
        assert blocked.status_code == 200, blocked.text
        await eventually(lambda: cp.entries.get(tag) == {"status": "Blocked"}, timeout=60)
        await settled(session_factory, cb, cp.version)
        before = cp.version
        unblocked = await api.patch(
            f"/api/v1/cards/{tag}", json={"blocked": False}, headers=admin.headers
        )
        assert unblocked.status_code == 200
        await eventually(lambda: cp.version == before + 1, timeout=60)
        assert cp.received[-1]["entries"] == [
            {"id_tag": tag, "id_tag_info": {"status": "Accepted"}}
        ]
        await settled(session_factory, cb, before + 1)

        # The driver reports it lost: pushed Blocked at once, and the cache cleared.
        lost = await api.post(f"/api/v1/me/cards/{tag}/report-lost", headers=driver.headers)
        assert lost.status_code == 200, lost.text
        await eventually(lambda: cp.version == before + 2 and cp.clear_caches == 1, timeout=60)
        assert cp.received[-1] == {
            "listVersion": before + 2,
            "updateType": "Differential",
            "entries": [{"id_tag": tag, "id_tag_info": {"status": "Blocked"}}],
        }
        await settled(session_factory, cb, before + 2)

        shown = await api.get(f"/api/v1/chargers/{cb}/local-list", headers=admin.headers)
        assert shown.status_code == 200, shown.text
        view = shown.json()
        assert view["list_version"] == before + 2 and view["supported"] is True
        assert view["in_step"] is True and view["clear_cache_pending"] is False
        assert view["last_clear_cache_status"] == "Accepted"
        assert {"idTag": tag, "status": "Blocked"} in view["entries"]

        # A forced sync: a Full update, audited.
        forced = await api.post(f"/api/v1/chargers/{cb}/local-list/sync", headers=admin.headers)
        assert forced.status_code == 202, forced.text
        assert forced.json()["signalled"] is True
        await eventually(lambda: cp.received[-1]["updateType"] == "Full", timeout=60)
        assert cp.received[-1]["listVersion"] == before + 3
        await settled(session_factory, cb, before + 3)
        audit = await api.get(
            "/api/v1/audit", params={"action": "local_list."}, headers=admin.headers
        )
        assert any(r["subject"] == cb for r in audit.json())
    assert isinstance(cp, ListCharger)


async def test_drivers_cannot_read_or_sync_local_lists(
    api: httpx.AsyncClient,  # noqa: F811
    auth_service: AuthService,
    session_factory: SessionFactory,
) -> None:
    driver = await person(auth_service, "ll-nosy")
    admin = await person(auth_service, "ll-admin2", role="admin")
    cb = await seed_charger(session_factory)
    assert (
        await api.get(f"/api/v1/chargers/{cb}/local-list", headers=driver.headers)
    ).status_code == 403
    for path in (f"/api/v1/chargers/{cb}/local-list/sync", "/api/v1/local-lists/sync"):
        assert (await api.post(path, headers=driver.headers)).status_code == 403
    assert (await api.get(f"/api/v1/chargers/{cb}/local-list")).status_code == 401
    missing = await api.get("/api/v1/chargers/NOPE-404/local-list", headers=admin.headers)
    assert missing.status_code == 404 and missing.json()["error"] == "NOT_FOUND"
