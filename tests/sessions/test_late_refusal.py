"""A tap never waits out a long budget, and a refusal that comes after the answer still counts.

Real gateway, real worker (started late: until then every pre-authorization misses the budget),
real charge points. The card is blocked after the charger was answered Accepted from the local
decision; the workflow's pre-authorization then refuses it:

- before the StartTransaction: the StartTransaction is answered Blocked (idTagInfo) and the
  session that the charger runs anyway is flagged;
- after it: the charger gets RemoteStopTransaction and the session is flagged.

Either way the refusal is audited (``decided_by: workflow-late``).

With ``POLARIS_RECORD_HISTORIES=1`` it also records ``tests/histories/charging_session_v5.json``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select, update
from temporalio.client import Client

from config.settings import Settings
from db.engine import SessionFactory
from db.models import AuditLog, EvCard, session_intents
from gateway.main import Gateway
from tests.gateway.conftest import seed_card
from tests.helpers import eventually
from tests.sessions.conftest import Station, session_row, station, transaction
from tests.sessions.test_forgotten_transactions import priced_charger
from worker import build_worker

pytestmark = pytest.mark.timeout(300)
# With POLARIS_RECORD_HISTORIES=1 the second test records the replay history of a session whose
# pre_authorize answered after the start (late-pre-authorize-v1) and that got
# authorization_refused (tests/workflows/test_replay.py).
V5_HISTORY = Path(__file__).parent.parent / "histories" / "charging_session_v5.json"


@pytest.fixture
async def workerless(
    stack_settings: Settings, session_factory: SessionFactory
) -> AsyncIterator[Gateway]:
    """The gateway with Temporal up but no worker yet: every pre-authorization is late."""
    settings = stack_settings.model_copy(update={"authorize_budget_s": 0.2})
    gw = Gateway(settings, relay_poll_interval_s=0.5)
    await gw.start()
    try:
        await asyncio.wait_for(gw.link.wait(), 30)
        yield gw
    finally:
        await gw.stop()


@pytest.fixture
async def late_stations(workerless: Gateway) -> AsyncIterator[list[Station]]:
    made: list[Station] = []
    yield made
    for one in made:
        await one.crash()


async def _block(sf: SessionFactory, id_tag: str) -> None:
    async with sf.begin() as db:
        await db.execute(update(EvCard).where(EvCard.id_tag == id_tag).values(blocked=True))


async def _tap_workflow(sf: SessionFactory, charge_box_id: str) -> str:
    async with sf() as db:
        workflow_id = await db.scalar(
            select(session_intents.c.workflow_id).where(
                session_intents.c.charge_box_id == charge_box_id
            )
        )
    assert workflow_id is not None
    return workflow_id


async def _late_audit(sf: SessionFactory, id_tag: str) -> dict[str, object]:
    async with sf() as db:
        rows = (
            await db.scalars(
                select(AuditLog).where(
                    AuditLog.subject == id_tag, AuditLog.action == "authorize.rejected"
                )
            )
        ).all()
    late = [r.details for r in rows if r.details.get("decided_by") == "workflow-late"]
    assert len(late) == 1, rows
    return late[0]


async def _flags(sf: SessionFactory, workflow_id: str) -> list[str]:
    row = await session_row(sf, workflow_id)
    assert row is not None
    return list(row.flags)


async def test_a_refusal_before_the_start_is_the_start_answer(
    workerless: Gateway,
    late_stations: list[Station],
    session_factory: SessionFactory,
    temporal_client: Client,
    stack_settings: Settings,
) -> None:
    sf = session_factory
    tag = await seed_card(sf)
    cb = await priced_charger(sf)
    charger = station(workerless, late_stations, cb)
    await charger.boot()
    assert await charger.tap(tag) == "Accepted"  # the local decision, within the budget
    workflow_id = await _tap_workflow(sf, cb)
    await _block(sf, tag)

    async with build_worker(temporal_client, stack_settings, sf):

        async def refused() -> bool:
            async with sf() as db:
                status = await db.scalar(
                    select(session_intents.c.auth_status).where(
                        session_intents.c.workflow_id == workflow_id
                    )
                )
            assert status == "Blocked"
            return True

        await eventually(refused, timeout=60, message="the late refusal reached the tap")
        tx, status = await charger.start(tag, 0)
        assert status == "Blocked"  # the charger is told to stop
        assert (await transaction(sf, tx)).auth_status == "Blocked"
        details = await _late_audit(sf, tag)
        assert details["refused"] == "before_start"

        # A charger that charges anyway: a session of its own (the tap's workflow has ended),
        # flagged, never billed silently.
        started = (await transaction(sf, tx)).workflow_id
        assert started != workflow_id
        await charger.meter(tx, 500)
        await charger.stop(tx, 1000, reason="DeAuthorized")

        async def flagged() -> bool:
            assert "start_refused:Blocked" in await _flags(sf, started)
            return True

        await eventually(flagged, timeout=60, message="the session is flagged")


async def test_a_refusal_after_the_start_stops_the_transaction(
    workerless: Gateway,
    late_stations: list[Station],
    session_factory: SessionFactory,
    temporal_client: Client,
    stack_settings: Settings,
) -> None:
    sf = session_factory
    tag = await seed_card(sf)
    cb = await priced_charger(sf)
    charger = station(workerless, late_stations, cb)
    await charger.boot()
    assert await charger.tap(tag) == "Accepted"
    tx, status = await charger.start(tag, 0)
    assert status == "Accepted"  # nothing has refused the card yet
    workflow_id = (await transaction(sf, tx)).workflow_id
    assert workflow_id == await _tap_workflow(sf, cb)
    await _block(sf, tag)

    async with build_worker(temporal_client, stack_settings, sf):

        async def remote_stopped() -> bool:
            assert charger.cp is not None and tx in charger.cp.remote_stops
            return True

        await eventually(remote_stopped, timeout=90, message="RemoteStopTransaction sent")
        assert (await transaction(sf, tx)).auth_status == "Blocked"
        details = await _late_audit(sf, tag)
        assert details["refused"] == "after_start"
        assert details["transaction_id"] == tx
        await charger.stop(tx, 1000, reason="Remote")

        async def flagged() -> bool:
            row = await session_row(sf, workflow_id)
            assert row is not None and row.state in ("billed", "closed"), row and row.state
            assert "start_refused:Blocked" in row.flags
            return True

        await eventually(flagged, timeout=60, message="the session is flagged and ended")
        if os.environ.get("POLARIS_RECORD_HISTORIES"):
            history = await temporal_client.get_workflow_handle(workflow_id).fetch_history()
            V5_HISTORY.write_text(history.to_json())
