"""A real session, end to end (a real ``ocpp`` charge point, the gateway, the worker, the Lago
sandbox): when it is billed its driver finds one ``session.billed`` notification with the cost
that was billed (docs/notifications.md)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from db.billing_models import Notification
from db.engine import SessionFactory
from gateway.main import Gateway
from tests.gateway.conftest import seed_card
from tests.helpers import eventually
from tests.sessions.conftest import Station, station, transaction
from tests.sessions.test_forgotten_transactions import ended, priced_charger

pytestmark = pytest.mark.timeout(180)


async def test_a_billed_session_lands_once_in_its_drivers_inbox(
    stack: Gateway, stations: list[Station], session_factory: SessionFactory
) -> None:
    sf = session_factory
    tag = await seed_card(sf)
    st = station(stack, stations, await priced_charger(sf))
    await st.boot()
    assert await st.tap(tag) == "Accepted"
    tx, _ = await st.start(tag, 0)
    await st.meter(tx, 4000)
    await st.stop(tx, 7000, reason="Local")
    workflow_id = (await transaction(sf, tx)).workflow_id
    energy_wh, amount_minor = await ended(sf, workflow_id, "closed")

    async def notified() -> list[Notification]:
        async with sf() as db:
            rows = await db.scalars(
                select(Notification).where(Notification.dedupe_key.contains(workflow_id))
            )
            found = list(rows.all())
        assert found, "no notification yet"
        return found

    [note] = await eventually(notified, timeout=30)
    assert (note.kind, note.audience, note.user_id) == ("session.billed", "user", f"user-{tag}")
    assert note.data["energy_wh"] == energy_wh and note.data["cost_minor"] == amount_minor
