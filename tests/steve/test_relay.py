# ruff: noqa: F811  (the session fixtures are imported, and requested by name)
"""Relay mode end to end: real gateway, real worker and Temporal, the Lago sandbox, the SteVe
stand-in upstream, and real ``ocpp`` charge points talking to the gateway.

- A tap through the relay: the charger sees SteVe's answers and SteVe's transaction id, our
  journal uses the same id, and the session is billed once.
- SteVe down and back in the middle of a session: the charger stays connected, transaction
  messages get InternalError (and are resent), nothing is lost on either side.
- SteVe's own commands reach the charger through the relay.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from ocpp.exceptions import InternalError
from ocpp.v16 import call
from sqlalchemy import text
from temporalio.client import Client

from activities.steve import SteveClient
from config.settings import Settings
from db.engine import SessionFactory
from gateway.main import Gateway
from sandbox.steve.app import SteveConfig, SteveStandIn
from sandbox.steve.server import RunningSteve
from sandbox.steve.state import SteveState
from services import operations
from services.context import ServiceContext
from tests.gateway.conftest import seed_card
from tests.helpers import eventually
from tests.operations.conftest import ADMIN
from tests.sessions.conftest import (  # noqa: F401  (fixtures)
    LAGO_KEY,
    Station,
    billing_of,
    lago,
    session_row,
    stack,
    station,
    stations,
    transaction,
)
from tests.sessions.test_forgotten_transactions import price, priced_charger
from tests.steve.conftest import PASSWORD, USER, wait_for

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
async def relayed_steve(session_factory: SessionFactory) -> AsyncIterator[RunningSteve]:
    """SteVe counts transactions from well above our sequence (as an operator sets it up)."""
    async with session_factory() as db:
        last = int(await db.scalar(text("SELECT last_value FROM transaction_id_seq")) or 0)
    standin = SteveStandIn(
        config=SteveConfig(user=USER, password=PASSWORD, call_timeout_s=5.0),
        state=SteveState(first_transaction_id=last + 10_000),
    )
    running = RunningSteve(standin)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()
    assert standin.contract_log.violations == []


@pytest.fixture
def stack_settings(
    base_settings: Settings, task_queue: str, lago: object, relayed_steve: RunningSteve
) -> Settings:
    from pydantic import SecretStr

    return base_settings.model_copy(
        update={
            "gateway_port": 0,
            "gateway_instance": f"gw-relay-{relayed_steve.port}",
            "temporal_task_queue": task_queue,
            "lago_api_url": lago.url,  # type: ignore[attr-defined]
            "lago_api_key": SecretStr(LAGO_KEY),
            "steve_ocpp_url": relayed_steve.ws_url,
            "steve_api_url": relayed_steve.url,
            "steve_api_user": USER,
            "steve_api_password": SecretStr(PASSWORD),
            "steve_relay_timeout_s": 5.0,
            "steve_relay_backoff_max_s": 2.0,
        }
    )


async def billed(sf: SessionFactory, workflow_id: str) -> tuple[int, int, int]:
    """(events, Wh, minor units) once the session is closed."""

    async def check() -> tuple[int, int, int]:
        row = await session_row(sf, workflow_id)
        assert row is not None and row.state == "closed", row and row.state
        events = await billing_of(sf, workflow_id)
        assert events
        return len(events), sum(e.energy_wh for e in events), sum(e.amount_minor for e in events)

    return await eventually(check, timeout=60)


async def test_a_relayed_session_uses_steves_transaction_id_and_is_billed_once(
    stack: Gateway,
    stations: list[Station],
    session_factory: SessionFactory,
    relayed_steve: RunningSteve,
) -> None:
    sf = session_factory
    state = relayed_steve.standin.state
    cb = await priced_charger(sf)
    tag = await seed_card(sf)
    state.add_tag(tag)
    st = station(stack, stations, cb)
    await st.boot()
    await wait_for(lambda: cb in relayed_steve.standin.stations)
    assert state.box(cb).vendor == "V"  # SteVe saw the BootNotification
    assert await st.tap(tag) == "Accepted"
    tx, status = await st.start(tag, 1000)
    assert status == "Accepted"
    assert tx in state.transactions and state.transactions[tx].charge_box_id == cb
    assert (await transaction(sf, tx)).meter_start_wh == 1000  # our journal, SteVe's id
    await st.meter(tx, 2000)
    await st.stop(tx, 2500)
    await st.stop(tx, 2500)  # a resend changes nothing on either side
    workflow_id = (await transaction(sf, tx)).workflow_id
    assert await billed(sf, workflow_id) == (1, 1500, price(1500))
    steve_tx = state.transactions[tx]
    assert (steve_tx.start_value, steve_tx.stop_value) == (1000, 2500)
    assert [v["value"] for v in steve_tx.values] == ["2000"]
    # Frames reached SteVe as the charger sent them.
    station_frames = relayed_steve.standin.stations[cb].frames
    assert any('"StartTransaction"' in f and tag in f for f in station_frames)


async def test_steve_down_and_back_during_a_session_loses_nothing(
    stack: Gateway,
    stations: list[Station],
    session_factory: SessionFactory,
    relayed_steve: RunningSteve,
) -> None:
    sf = session_factory
    state = relayed_steve.standin.state
    cb = await priced_charger(sf)
    tag = await seed_card(sf)
    state.add_tag(tag)
    st = station(stack, stations, cb)
    await st.boot()
    await wait_for(lambda: cb in relayed_steve.standin.stations)
    tx, _ = await st.start(tag, 0)
    await st.meter(tx, 700)

    await relayed_steve.stop()  # SteVe goes away mid-session
    # The charger stays connected: non-transactional messages are answered by the gateway …
    assert (await st.call(call.Heartbeat())).current_time
    await st.status("Charging")
    # … transaction messages get InternalError, so the charger keeps them.
    with pytest.raises(InternalError):
        await st.meter(tx, 1200)
    with pytest.raises(InternalError):
        await st.stop(tx, 1500)
    assert st.cp is not None  # still connected

    await relayed_steve.start()  # SteVe is back on the same port; the relay reconnects
    await wait_for(lambda: cb in relayed_steve.standin.stations, timeout_s=60)
    await st.meter(tx, 1200)  # the charger's queue drains
    await st.stop(tx, 1500)
    workflow_id = (await transaction(sf, tx)).workflow_id
    assert await billed(sf, workflow_id) == (1, 1500, price(1500))
    steve_tx = state.transactions[tx]
    assert (steve_tx.stop_value, [v["value"] for v in steve_tx.values]) == (1500, ["700", "1200"])


async def test_steve_commands_reach_the_charger_through_the_relay(
    stack: Gateway,
    stations: list[Station],
    session_factory: SessionFactory,
    relayed_steve: RunningSteve,
) -> None:
    sf = session_factory
    cb = await priced_charger(sf)
    tag = await seed_card(sf)
    relayed_steve.standin.state.add_tag(tag)
    st = station(stack, stations, cb)
    await st.boot()
    await wait_for(lambda: cb in relayed_steve.standin.stations)
    tx, _ = await st.start(tag, 0)
    async with SteveClient(relayed_steve.url, USER, PASSWORD) as steve:
        outcome = await steve.remote_stop(cb, tx)
        started = await steve.remote_start(cb, tag, connector_id=2)
    assert (outcome.response, started.response) == ("Accepted", "Accepted")
    assert st.cp is not None
    assert st.cp.remote_stops == [tx]
    assert st.cp.remote_starts == [{"id_tag": tag, "connector_id": 2}]


async def test_workflow_commands_go_through_steves_rest_api_into_the_operations_log(
    stack: Gateway,
    stations: list[Station],
    session_factory: SessionFactory,
    relayed_steve: RunningSteve,
    stack_settings: Settings,
    temporal_client: Client,
) -> None:
    sf = session_factory
    cb = await priced_charger(sf)
    tag = await seed_card(sf)
    relayed_steve.standin.state.add_tag(tag)
    st = station(stack, stations, cb)
    await st.boot()
    await wait_for(lambda: cb in relayed_steve.standin.stations)

    async def temporal() -> Client:
        return temporal_client

    ctx = ServiceContext(settings=stack_settings, sessions=sf, temporal=temporal)
    answer = await operations.request_operation(
        ctx, ADMIN, cb, "RemoteStartTransaction", {"idTag": tag, "connectorId": 1}
    )
    assert (answer["status"], answer["response"]) == ("answered", {"status": "Accepted"})
    assert st.cp is not None and st.cp.remote_starts == [{"id_tag": tag, "connector_id": 1}]
    checked = relayed_steve.standin.contract_log.checked
    assert checked[("POST /api/v1/operations/RemoteStartTransaction", 200)] == 1
    # SteVe refuses a card it does not know: the operation fails with SteVe's reason.
    refused = await operations.request_operation(
        ctx, ADMIN, cb, "RemoteStartTransaction", {"idTag": "NOT-IN-STEVE"}
    )
    assert refused["status"] == "failed" and "not eligible" in refused["error"]
