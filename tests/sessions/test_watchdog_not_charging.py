"""A charger that keeps heartbeating but never charges again: its liveness alone must not keep
the transaction open. The watchdog (short window here) closes it and bills the last register."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from ocpp.v16 import call

from config.settings import Settings
from db.engine import SessionFactory
from gateway.main import Gateway
from tests.gateway.conftest import seed_card
from tests.sessions.conftest import Station, station, transaction
from tests.sessions.test_forgotten_transactions import ended, price, priced_charger

pytestmark = pytest.mark.timeout(180)

# Well past the gateway's last_seen_at write interval (5 s), so a heartbeating charger is live
# even when a loaded machine stalls the in-process heartbeat loop for a few seconds (at 12 s it
# was seen as silent now and then on a busy 2-core machine).
WATCHDOG_S = 25.0


@pytest.fixture
def stack_settings(stack_settings: Settings) -> Settings:
    return stack_settings.model_copy(update={"session_watchdog_silence_s": WATCHDOG_S})


async def test_a_live_charger_that_never_charges_again_has_its_transaction_closed(
    stack: Gateway, stations: list[Station], session_factory: SessionFactory
) -> None:
    sf = session_factory
    cb = await priced_charger(sf)
    tag = await seed_card(sf)
    st = station(stack, stations, cb)
    await st.boot()
    assert await st.tap(tag) == "Accepted"
    tx, _ = await st.start(tag, 1000)
    await st.status("Charging")
    await st.meter(tx, 1400)
    workflow_id = (await transaction(sf, tx)).workflow_id

    # Firmware crash: the charger reboots without the transaction and says nothing about the
    # connector; it only heartbeats from now on.
    await st.crash()
    await st.boot()

    async def heartbeats() -> None:
        while True:
            await st.call(call.Heartbeat())
            await asyncio.sleep(1)

    beating = asyncio.create_task(heartbeats())
    try:
        assert await ended(sf, workflow_id, "abandoned") == (400, price(400))
    finally:
        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beating
    journal = await transaction(sf, tx)
    assert journal.closed_reason == "not_charging"
