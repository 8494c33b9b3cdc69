"""`polaris local-list show|sync` against real processes (Temporal, worker, gateway) and a real
`ocpp` 1.6 charge point that keeps its list as the spec says."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets
from ocpp.v16 import call

from db.engine import SessionFactory
from tests.e2e.conftest import SUBPROTOCOL, Platform, seed_charger
from tests.e2e.test_cli_sessions import polaris
from tests.gateway.conftest import seed_card
from tests.local_lists.conftest import ListCharger

pytestmark = pytest.mark.timeout(300)


async def test_an_operator_forces_a_full_update_and_reads_the_list(
    platform: Platform, session_factory: SessionFactory
) -> None:
    charge_box_id = await seed_charger(session_factory)
    tag = await seed_card(session_factory, prefix="LX")
    async with websockets.connect(
        f"{platform.gateway_url}/{charge_box_id}", subprotocols=[SUBPROTOCOL]
    ) as ws:
        cp = ListCharger(charge_box_id, ws)
        reader = asyncio.create_task(cp.start())
        try:
            await cp.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
            synced = await polaris(platform, "local-list", "sync", charge_box_id, "--json")
            assert synced.returncode == 0, synced.stderr + platform.logs()
            body = json.loads(synced.stdout)
            assert body["last_sync_status"] == "sent" and body["list_version"] == 1
            assert body["request"]["update_type"] == "Full" and body["in_step"] is True
            assert cp.received[-1]["updateType"] == "Full" and cp.version == 1
            assert cp.entries[tag] == {"status": "Accepted"}

            shown = await polaris(platform, "local-list", "show", charge_box_id, "--json")
            assert shown.returncode == 0, shown.stderr
            view = json.loads(shown.stdout)
            assert view["supported"] is True and view["max_length"] == 10000
            assert {"idTag": tag, "status": "Accepted"} in view["entries"]
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    unknown = await polaris(platform, "local-list", "show", "NO-SUCH-CHARGER", "--json")
    assert unknown.returncode == 4 and json.loads(unknown.stdout)["error"] == "NOT_FOUND"
    neither = await polaris(platform, "local-list", "sync", "--json")
    assert neither.returncode == 2
    # The worker started this task queue's reconciler at start-up.
    assert "could not start the local-list reconciler" not in platform.worker.output()
