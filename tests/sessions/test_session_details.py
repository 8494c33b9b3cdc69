"""Smaller session rules found with a third-party simulator: the owner is frozen at start, a
session that delivered no energy pays no session fee, and ``polaris sessions start`` says at once
when the start is refused."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from activities.sessions import SessionActivities, SessionReadModel
from api.identity_views import owned_sessions
from db.engine import SessionFactory
from db.models import UserMapping
from gateway.main import Gateway
from tests.gateway.conftest import seed_card
from tests.sessions.conftest import Station, session_row, station, transaction
from tests.sessions.test_force_close import polaris
from tests.sessions.test_forgotten_transactions import ended, priced_charger
from workflows.messages import SessionSummary

pytestmark = pytest.mark.timeout(180)


async def test_a_session_keeps_its_owner_when_the_card_changes_hands(
    stack: Gateway, stations: list[Station], session_factory: SessionFactory
) -> None:
    sf = session_factory
    tag = await seed_card(sf)
    st = station(stack, stations, await priced_charger(sf))
    await st.boot()
    tx, _ = await st.start(tag, 0)  # the charger skipped Authorize: no pre-authorized owner
    await st.stop(tx, 1000, reason="Local")
    workflow_id = (await transaction(sf, tx)).workflow_id
    await ended(sf, workflow_id, "closed")

    # The card goes to someone else, and the old session's row is written again without an owner
    # (the read model's fallback would take the card's holder now).
    async with sf.begin() as db:
        stale = update(UserMapping).where(UserMapping.id_tag == tag).values(is_active=False)
        await db.execute(stale)
        db.add(UserMapping(user_id="new-holder", public_id="NEWHOLDR", id_tag=tag))
    before = await session_row(sf, workflow_id)
    assert before is not None
    summary = SessionSummary.model_validate(before, from_attributes=True)
    rewrite = SessionReadModel.model_validate({**summary.model_dump(), "user_id": None})
    await SessionActivities(sf).upsert_session_read_model(rewrite)
    row = await session_row(sf, workflow_id)
    assert row is not None and row.user_id == f"user-{tag}"
    async with sf() as db:
        theirs = (await db.scalars(owned_sessions("new-holder"))).all()
        previous = (await db.scalars(owned_sessions(f"user-{tag}"))).all()
    assert workflow_id not in {s.workflow_id for s in theirs}
    assert workflow_id in {s.workflow_id for s in previous}


async def test_a_session_that_delivered_no_energy_pays_no_session_fee(
    stack: Gateway, stations: list[Station], session_factory: SessionFactory
) -> None:
    sf = session_factory
    tag = await seed_card(sf)
    st = station(stack, stations, await priced_charger(sf))  # 0.50 EUR per session
    await st.boot()
    assert await st.tap(tag) == "Accepted"
    tx, _ = await st.start(tag, 7000)
    await st.stop(tx, 7000, reason="EVDisconnected")
    assert await ended(sf, (await transaction(sf, tx)).workflow_id, "closed") == (0, 0)


async def test_sessions_start_exits_non_zero_when_refused_at_once(
    stack: Gateway, stations: list[Station], session_factory: SessionFactory
) -> None:
    sf = session_factory
    cb = await priced_charger(sf)
    st = station(stack, stations, cb)
    await st.boot()
    refused = await polaris(
        stack, "sessions", "start", "--charger", cb, "--id-tag", "NOBODY", "--wait-s", "60"
    )
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "start refused: unknown_card" in refused.stdout

    tag = await seed_card(sf)
    accepted = await polaris(
        stack, "sessions", "start", "--charger", cb, "--id-tag", tag, "--connector", "1"
    )
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert st.cp is not None and st.cp.remote_starts == [{"id_tag": tag, "connector_id": 1}]
