"""Session paths through the real processes that are not outages: a charger that never sends
Authorize, and a StopTransaction for a transaction id nobody knows."""

from __future__ import annotations

import pytest
from ocpp.v16 import call
from ocpp.v16.enums import AuthorizationStatus
from sqlalchemy import select

from activities.lago import LagoBilling
from db.engine import SessionFactory
from db.models import ChargingSession, OrphanStop
from tests.e2e.conftest import (
    Platform,
    SimulatedCharger,
    billed,
    lago_events,
    lago_wh,
    now_iso,
    seed_charger,
    seed_driver,
    workflow_of,
)
from tests.helpers import eventually

pytestmark = pytest.mark.timeout(300)


async def test_charger_that_skips_authorize_is_still_billed_once(
    platform: Platform,
    session_factory: SessionFactory,
    lago_billing: LagoBilling,
    charger_factory: list[SimulatedCharger],
) -> None:
    charge_box_id = await seed_charger(session_factory)
    driver = await seed_driver(session_factory, lago_billing)
    assert driver.subscription is not None
    charger = SimulatedCharger(platform.gateway_url, charge_box_id)
    charger_factory.append(charger)
    await charger.connect()
    # Free-vend style firmware: StartTransaction straight away, no Authorize first.
    started = await charger.call(
        call.StartTransaction(
            connector_id=1, id_tag=driver.id_tag, meter_start=5_000, timestamp=now_iso()
        )
    )
    assert started.id_tag_info["status"] == AuthorizationStatus.accepted
    tx = int(started.transaction_id)
    await charger.meter(tx, 5_600)
    await charger.call(
        call.StopTransaction(
            meter_stop=6_234, timestamp=now_iso(), transaction_id=tx, id_tag=driver.id_tag
        )
    )
    workflow_id = await workflow_of(session_factory, tx)
    assert f":{charge_box_id}:1:start:" in workflow_id  # minted from the start's identity

    async def done() -> bool:
        result = await billed(session_factory, workflow_id)
        return (
            result is not None
            and result.state in ("billed", "closed")
            and bool(lago_events(platform.sandbox, driver.subscription or ""))
        )

    try:
        await eventually(done, timeout=120, message="session billed")
    except AssertionError:
        state = await billed(session_factory, workflow_id)
        raise AssertionError(f"not billed: {state}\n{platform.logs()}") from None
    result = await billed(session_factory, workflow_id)
    assert result is not None and result.energy_wh == 1_234
    assert lago_wh(lago_events(platform.sandbox, driver.subscription)) == 1_234
    # Never pre-authorized, still the card owner's session (it shows in their own list).
    async with session_factory() as db:
        row = await db.get(ChargingSession, workflow_id)
    assert row is not None and row.user_id == f"user-{driver.public_id}"


async def test_stop_for_an_unknown_transaction_is_accepted_and_kept(
    platform: Platform,
    session_factory: SessionFactory,
    charger_factory: list[SimulatedCharger],
) -> None:
    charge_box_id = await seed_charger(session_factory)
    charger = SimulatedCharger(platform.gateway_url, charge_box_id)
    charger_factory.append(charger)
    await charger.connect()
    answer = await charger.call(
        call.StopTransaction(
            meter_stop=42, timestamp=now_iso(), transaction_id=987_654_321, reason="PowerLoss"
        )
    )
    assert answer.id_tag_info is None  # accepted: a CallError would make it resend forever
    async with session_factory() as db:
        orphans = (
            (await db.execute(select(OrphanStop).where(OrphanStop.charge_box_id == charge_box_id)))
            .scalars()
            .all()
        )
    assert [o.transaction_id for o in orphans] == [987_654_321]
