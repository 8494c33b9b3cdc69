"""A real charge point's session (gateway, worker, Temporal as processes) on the live streams of
a real API process: session.started / updated / stopped / billed for the driver, charger status
for the operator and, once the driver has charged there, for the driver too."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest
from ocpp.v16 import call
from sqlalchemy import update

from activities.lago import EnsureSubscriptionInput, LagoBilling, UpsertCustomerInput
from db.engine import SessionFactory
from db.models import Charger, EvCard, Site, UserMapping
from domain.events import (
    CHARGER_CONNECTED,
    CHARGER_STATUS_CHANGED,
    SESSION_BILLED,
    SESSION_STARTED,
    SESSION_STOPPED,
    SESSION_UPDATED,
)
from domain.webhook_schemas import DATA_SCHEMAS
from tests.e2e.conftest import Platform, SimulatedCharger, now_iso, seed_charger
from tests.fixtures.auth import AuthService
from tests.helpers import eventually
from tests.identity.conftest import person
from tests.live.conftest import ApiProcess, SseClient, api_env, start_api

pytestmark = pytest.mark.timeout(400)

OpenStream = Callable[..., SseClient]


@pytest.fixture
def platform_env() -> dict[str, str]:
    # Every meter progress reaches the stream (no throttle), so the test sees the energy rise.
    return {"POLARIS_SESSION_PROGRESS_EVENT_INTERVAL_S": "0"}


def of_charger(client: SseClient, charge_box_id: str) -> list[tuple[str, dict[str, object]]]:
    return [
        (e.event, e.data["payload"])
        for e in client.events
        if e.data.get("charge_box_id") == charge_box_id
    ]


async def test_a_charge_point_session_reaches_the_driver_and_operator_streams(
    platform: Platform,
    tmp_path: Path,
    pg_url: str,
    auth_service: AuthService,
    session_factory: SessionFactory,
    lago_billing: LagoBilling,
    charger_factory: list[SimulatedCharger],
    sse: OpenStream,
) -> None:
    admin = await person(auth_service, "live-admin", role="admin")
    driver = await person(auth_service, "live-driver")
    public_id = uuid.uuid4().hex[:8].upper()
    id_tag = f"L{public_id}"
    async with session_factory.begin() as db:
        db.add(EvCard(id_tag=id_tag))
        await db.flush()
        db.add(
            UserMapping(
                user_id=driver.user_id, public_id=public_id, id_tag=id_tag, email=driver.email
            )
        )
    await lago_billing.upsert_customer(UpsertCustomerInput(public_id=public_id, currency="EUR"))
    await lago_billing.ensure_subscription(EnsureSubscriptionInput(public_id=public_id))
    charge_box_id = await seed_charger(session_factory)
    async with session_factory.begin() as db:
        site = Site(name=f"Live e2e {charge_box_id}")
        db.add(site)
        await db.flush()
        await db.execute(
            update(Charger).where(Charger.charge_box_id == charge_box_id).values(site_id=site.id)
        )

    env = api_env(pg_url, f"127.0.0.1:{platform.temporal.port}", auth_service, tmp_path)
    api: ApiProcess = start_api("api", env, tmp_path)
    try:
        ops = sse(f"{api.url}/api/v1/stream?types=session.*,charger.*", admin.jwt)
        mine = sse(f"{api.url}/api/v1/me/stream", driver.jwt)
        await eventually(lambda: ops.comments >= 1 and mine.comments >= 1, timeout=60)

        charger = SimulatedCharger(platform.gateway_url, charge_box_id)
        charger_factory.append(charger)
        await charger.connect()
        await charger.call(
            call.StatusNotification(
                connector_id=1, error_code="NoError", status="Preparing", timestamp=now_iso()
            )
        )
        await eventually(
            lambda: (
                [t for t, _ in of_charger(ops, charge_box_id)]
                == [CHARGER_CONNECTED, CHARGER_STATUS_CHANGED]
            ),
            timeout=60,
        )
        # Not the driver's site yet: they have never charged here.
        assert of_charger(mine, charge_box_id) == []

        started = await charger.call(
            call.StartTransaction(
                connector_id=1, id_tag=id_tag, meter_start=1_000, timestamp=now_iso()
            )
        )
        tx = int(started.transaction_id)
        await eventually(
            lambda: SESSION_STARTED in [t for t, _ in of_charger(mine, charge_box_id)],
            timeout=120,
        )
        # Now it is: the charger's status reaches the driver too.
        await charger.call(
            call.StatusNotification(
                connector_id=1, error_code="NoError", status="Charging", timestamp=now_iso()
            )
        )
        await eventually(
            lambda: any(
                t == CHARGER_STATUS_CHANGED and p["status"] == "Charging"
                for t, p in of_charger(mine, charge_box_id)
            ),
            timeout=60,
        )
        await charger.meter(tx, 1_700)

        def energy_seen() -> bool:
            return any(
                t == SESSION_UPDATED and p["energy_wh"] == 700
                for t, p in of_charger(mine, charge_box_id)
            )

        await eventually(energy_seen, timeout=120)
        await charger.call(
            call.StopTransaction(
                meter_stop=2_500, timestamp=now_iso(), transaction_id=tx, id_tag=id_tag
            )
        )

        def session_types(client: SseClient) -> list[str]:
            return [t for t, _ in of_charger(client, charge_box_id) if t.startswith("session.")]

        def finished() -> bool:
            types = session_types(mine)
            assert SESSION_STOPPED in types and SESSION_BILLED in types, types
            return True

        try:
            await eventually(finished, timeout=180)
        except AssertionError:
            raise AssertionError(f"{mine.events}\n{platform.logs()}") from None
        types = session_types(mine)
        assert types[0] == SESSION_STARTED
        assert types.index(SESSION_STARTED) < types.index(SESSION_STOPPED)
        assert types.index(SESSION_STOPPED) <= types.index(SESSION_BILLED)
        assert types.count(SESSION_STARTED) == types.count(SESSION_STOPPED) == 1
        stopped = next(p for t, p in of_charger(mine, charge_box_id) if t == SESSION_STOPPED)
        assert stopped["energy_wh"] == 1_500 and stopped["transaction_id"] == tx
        assert "id_tag" not in stopped
        # Every payload is what the webhooks' catalogue (docs/webhooks.md) describes.
        for event in ops.events + mine.events:
            if event.event in DATA_SCHEMAS:
                jsonschema.validate(event.data["payload"], DATA_SCHEMAS[event.event])
        # The operator saw the same session events, in the same order.
        await eventually(lambda: session_types(ops) == session_types(mine), timeout=60)
    finally:
        api.process.stop()
