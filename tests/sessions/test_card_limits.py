"""Card limits hold at StartTransaction too, and one card on two chargers at once is decided one
after the other (issue #8: both were accepted).

A charger using its Authorization Cache (or LocalPreAuthorize) starts without Authorize; the
StartTransaction answer then carries the card's real status. A transaction the charger keeps
running after a refusal is still journaled and billed to the card's owner, flagged.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import update

from config.settings import Settings
from db.engine import SessionFactory
from db.models import EvCard
from gateway.main import Gateway
from tests.gateway.conftest import seed_card
from tests.helpers import eventually
from tests.sessions.conftest import Station, session_row, station, transaction
from tests.sessions.test_forgotten_transactions import ended, price, priced_charger

pytestmark = pytest.mark.timeout(300)
RUNS = 3


@pytest.fixture
def stack_settings(stack_settings: Settings) -> Settings:
    # The race is decided by the per-card lock, not by who misses the Authorize budget: give the
    # workflow's pre-authorization all the time it needs, so every answer is the workflow's.
    return stack_settings.model_copy(update={"authorize_budget_s": 60.0})


async def test_a_cached_card_over_its_limit_is_refused_at_start_yet_billed_to_its_owner(
    stack: Gateway, stations: list[Station], session_factory: SessionFactory
) -> None:
    sf = session_factory
    tag = await seed_card(sf)  # max_concurrent_sessions = 1
    here, there = await priced_charger(sf), await priced_charger(sf)
    a, b = station(stack, stations, here), station(stack, stations, there)
    await a.boot()
    await b.boot()
    assert await a.tap(tag) == "Accepted"
    first_tx, status = await a.start(tag, 0)
    assert status == "Accepted"

    # Charger b has the card in its cache: no Authorize, straight to StartTransaction.
    tx, status = await b.start(tag, 10_000)
    assert status == "ConcurrentTx"
    journal = await transaction(sf, tx)
    assert journal.auth_status == "ConcurrentTx"
    assert journal.owner_user_id == f"user-{tag}"

    # It charges anyway: what it measures is billed to the card's owner and flagged.
    await b.meter(tx, 11_000)
    await b.stop(tx, 12_000, reason="Local")
    assert await ended(sf, journal.workflow_id, "closed") == (2000, price(2000))
    row = await session_row(sf, journal.workflow_id)
    assert row is not None
    assert row.user_id == f"user-{tag}"
    assert "start_refused:ConcurrentTx" in row.flags
    await a.stop(first_tx, 500, reason="Local")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"blocked": True}, "Blocked"),
        ({"expires_at": datetime(2020, 1, 1, tzinfo=UTC)}, "Expired"),
        ({"is_active": False}, "Blocked"),
    ],
)
async def test_start_transaction_carries_the_cards_real_status(
    stack: Gateway,
    stations: list[Station],
    session_factory: SessionFactory,
    change: dict[str, object],
    expected: str,
) -> None:
    sf = session_factory
    tag = await seed_card(sf)
    async with sf.begin() as db:
        await db.execute(update(EvCard).where(EvCard.id_tag == tag).values(**change))
    st = station(stack, stations, await priced_charger(sf))
    await st.boot()
    _, status = await st.start(tag, 0)
    assert status == expected
    _, unknown = await st.start("NO-SUCH-CARD", 0, connector_id=2)
    assert unknown == "Invalid"


async def test_same_card_tapped_on_two_chargers_at_once_is_accepted_once(
    stack: Gateway, stations: list[Station], session_factory: SessionFactory
) -> None:
    sf = session_factory
    here, there = await priced_charger(sf), await priced_charger(sf)
    a, b = station(stack, stations, here), station(stack, stations, there)
    await a.boot()
    await b.boot()
    for _ in range(RUNS):
        tag = await seed_card(sf)
        answers = await asyncio.gather(a.tap(tag), b.tap(tag))
        assert sorted(answers) == ["Accepted", "ConcurrentTx"], answers


async def test_same_card_started_on_two_chargers_at_once_is_accepted_once(
    stack: Gateway, stations: list[Station], session_factory: SessionFactory
) -> None:
    sf = session_factory
    here, there = await priced_charger(sf), await priced_charger(sf)
    a, b = station(stack, stations, here), station(stack, stations, there)
    await a.boot()
    await b.boot()
    for run in range(RUNS):
        tag = await seed_card(sf)
        (tx_a, at_a), (tx_b, at_b) = await asyncio.gather(
            a.start(tag, run * 1000), b.start(tag, run * 1000)
        )
        assert sorted([at_a, at_b]) == ["Accepted", "ConcurrentTx"]
        # Both transactions are journaled; stop them so the next run starts clean.
        await a.stop(tx_a, run * 1000 + 10, reason="Local")
        await b.stop(tx_b, run * 1000 + 10, reason="Local")


async def test_the_card_is_free_again_once_its_session_stopped(
    stack: Gateway, stations: list[Station], session_factory: SessionFactory
) -> None:
    sf = session_factory
    tag = await seed_card(sf)
    a = station(stack, stations, await priced_charger(sf))
    b = station(stack, stations, await priced_charger(sf))
    await a.boot()
    await b.boot()
    assert await a.tap(tag) == "Accepted"
    tx, _ = await a.start(tag, 0)
    assert await b.tap(tag) == "ConcurrentTx"
    await a.stop(tx, 100, reason="Local")

    async def free() -> bool:
        return await b.tap(tag) == "Accepted"

    assert await eventually(free, timeout=30, interval=0.5)
