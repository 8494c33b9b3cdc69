"""Chargers that forget their transaction: the platform closes it, bills the last good register,
flags why, and still compensates exactly when a late StopTransaction turns up.

The real gateway, the real worker and Temporal, and real ``ocpp`` charge points that crash.
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import insert, select

from cli.sessions import list_sessions, session_story
from db.engine import SessionFactory
from db.models import AuditLog, Charger, Connector, Tariff
from gateway.main import Gateway
from tests.gateway.conftest import FAST_FORWARD_W, seed_card
from tests.helpers import eventually
from tests.sessions.conftest import Station, billing_of, session_row, station, transaction

pytestmark = pytest.mark.timeout(180)

# 0.30 EUR/kWh + 0.50 EUR per session (no fee below 1 Wh, the default).
PER_KWH, PER_SESSION = 30, 50


def price(energy_wh: int) -> int:
    return (energy_wh * PER_KWH + 500) // 1000 + (PER_SESSION if energy_wh > 0 else 0)


async def priced_charger(sf: SessionFactory) -> str:
    charge_box_id = f"CB-{uuid.uuid4().hex[:10]}"
    async with sf.begin() as db:
        tariff_id = await db.scalar(
            insert(Tariff)
            .values(
                code=f"t-{charge_box_id}",
                currency="EUR",
                price_per_kwh_minor=PER_KWH,
                price_per_minute_minor=0,
                price_per_session_minor=PER_SESSION,
            )
            .returning(Tariff.id)
        )
        # Passwordless (exempted, as env="test" requires), and a power no real charger has: these
        # chargers deliver kWh in seconds.
        db.add(
            Charger(
                charge_box_id=charge_box_id,
                tariff_id=tariff_id,
                allow_unauthenticated=True,
                max_power_w=FAST_FORWARD_W,
            )
        )
        await db.flush()
        db.add(Connector(charge_box_id=charge_box_id, connector_id=1))
    return charge_box_id


async def ended(sf: SessionFactory, workflow_id: str, state: str) -> tuple[int, int]:
    """Wait for the session's read model to reach ``state``; its billed (Wh, minor units)."""

    async def check() -> tuple[int, int]:
        row = await session_row(sf, workflow_id)
        assert row is not None and row.state == state, row and (row.state, row.end_reason)
        events = await billing_of(sf, workflow_id)
        assert events
        return sum(e.energy_wh for e in events), sum(e.amount_minor for e in events)

    return await eventually(check, timeout=60)


async def closures(sf: SessionFactory, workflow_id: str) -> list[AuditLog]:
    async with sf() as db:
        rows = await db.scalars(
            select(AuditLog).where(
                AuditLog.action == "session.closed", AuditLog.subject == workflow_id
            )
        )
        return list(rows)


async def test_reboot_without_the_transaction_then_a_tap_within_seconds_bills_both_right(
    stack: Gateway, stations: list[Station], session_factory: SessionFactory
) -> None:
    sf = session_factory
    cb = await priced_charger(sf)
    tag = await seed_card(sf)
    st = station(stack, stations, cb)
    await st.boot()
    assert await st.tap(tag) == "Accepted"
    tx1, status = await st.start(tag, 1000)
    assert status == "Accepted"
    await st.status("Charging")
    await st.meter(tx1, 2500)
    first = (await transaction(sf, tx1)).workflow_id

    # Power loss: the charger comes back without its transaction and reports the connector free.
    await st.crash()
    await st.boot()
    await st.status("Available")
    # The driver taps again at once: the forgotten session no longer holds the card.
    assert await st.tap(tag) == "Accepted"
    tx2, status = await st.start(tag, 2500)
    assert status == "Accepted"
    await st.meter(tx2, 4000)
    await st.stop(tx2, 4000)  # no reason: OCPP's default, Local

    assert await ended(sf, first, "abandoned") == (1500, price(1500))
    second = (await transaction(sf, tx2)).workflow_id
    assert await ended(sf, second, "closed") == (1500, price(1500))

    row = await session_row(sf, first)
    assert row is not None and row.end_reason == "closed_charger_rebooted"
    assert "closed_charger_rebooted" in row.flags
    journal = await transaction(sf, tx1)
    assert (journal.closed_reason, journal.stopped_at) == ("charger_rebooted", None)
    assert (await transaction(sf, tx2)).stop_reason == "Local"
    audit = await closures(sf, first)
    assert [a.details["reason"] for a in audit] == ["charger_rebooted"]
    assert audit[0].actor == f"charger:{cb}"

    # What the operator reads: `polaris sessions show` and the session list.
    async with sf() as db:
        story = await session_story(db, first)
        listed = {r["workflow_id"]: r for r in await list_sessions(db, 200)}
    assert story is not None
    assert story["transactions"][0]["closed_reason"] == "charger_rebooted"
    assert listed[first]["end_reason"] == "closed_charger_rebooted"
    assert "closed_charger_rebooted" in listed[first]["flags"]


async def test_a_new_transaction_on_the_same_connector_closes_the_old_and_a_late_stop_compensates(
    stack: Gateway, stations: list[Station], session_factory: SessionFactory
) -> None:
    sf = session_factory
    cb = await priced_charger(sf)
    tag, other = await seed_card(sf), await seed_card(sf)
    st = station(stack, stations, cb)
    await st.boot()
    assert await st.tap(tag) == "Accepted"
    tx1, _ = await st.start(tag, 1000)
    await st.meter(tx1, 1800)
    first = (await transaction(sf, tx1)).workflow_id

    # The charger forgot tx1 and starts another transaction on the same connector.
    tx2, status = await st.start(other, 1800)
    assert status == "Accepted"
    assert await ended(sf, first, "abandoned") == (800, price(800))
    row = await session_row(sf, first)
    assert row is not None and row.end_reason == "closed_new_transaction"
    assert [a.details["reason"] for a in await closures(sf, first)] == ["new_transaction"]

    # It remembers after all: the late stop is journaled and compensates exactly.
    await st.stop(tx1, 2000, reason="PowerLoss")

    async def compensated() -> list[int]:
        events = await billing_of(sf, first)
        assert [e.kind for e in events] == ["final", "compensation"]
        return [e.amount_minor for e in events]

    lines = await eventually(compensated, timeout=60)
    assert sum(lines) == price(1000)
    assert (await transaction(sf, tx1)).stop_reason == "PowerLoss"

    await st.stop(tx2, 2600, reason="EVDisconnected")
    second = (await transaction(sf, tx2)).workflow_id
    assert await ended(sf, second, "closed") == (800, price(800))
