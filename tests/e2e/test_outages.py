"""A session survives the loss of any single process and is billed exactly once.

Each test runs a real charging session through real processes — the gateway, a worker, the
Temporal dev server on its SQLite file — with a real ``ocpp`` charge point, kills one process
(SIGKILL) in the middle and brings it back. The session must end with the exact energy
(meter stop − meter start) billed once: in ``billing_events`` and in what Lago received.
"""

from __future__ import annotations

import signal

import pytest
from ocpp.v16 import call
from ocpp.v16.enums import AuthorizationStatus
from sqlalchemy import text
from temporalio.client import Client, WorkflowExecutionStatus

from activities.lago import LagoBilling
from db.engine import SessionFactory
from db.models import GatewayOutbox
from tests.e2e.conftest import (
    Billed,
    Platform,
    SimulatedCharger,
    billed,
    lago_events,
    lago_wh,
    now_iso,
    seed_charger,
    seed_driver,
    transactions_for,
    workflow_of,
)
from tests.helpers import eventually

pytestmark = pytest.mark.timeout(300)

METER_START_WH = 1_000
METER_STOP_WH = 4_321
TRUE_ENERGY_WH = METER_STOP_WH - METER_START_WH
# 3.321 kWh x 0.30 EUR = 0.9963 EUR + 0.50 session fee = 1.4963 → 150 minor units
EXPECTED_AMOUNT_MINOR = 150


async def _begin(
    platform: Platform, factory: SessionFactory, lago: LagoBilling, chargers: list[SimulatedCharger]
) -> tuple[SimulatedCharger, str, int, str]:
    """Tap, start, two meter values. Returns the charger, idTag, transaction id, subscription."""
    charge_box_id = await seed_charger(factory)
    driver = await seed_driver(factory, lago)
    assert driver.subscription is not None
    charger = SimulatedCharger(platform.gateway_url, charge_box_id)
    chargers.append(charger)
    await charger.connect()
    authorized = await charger.call(call.Authorize(id_tag=driver.id_tag))
    assert authorized.id_tag_info["status"] == AuthorizationStatus.accepted
    started = await charger.call(
        call.StartTransaction(
            connector_id=1, id_tag=driver.id_tag, meter_start=METER_START_WH, timestamp=now_iso()
        )
    )
    assert started.id_tag_info["status"] == AuthorizationStatus.accepted
    transaction_id = int(started.transaction_id)
    await charger.meter(transaction_id, 1_500)
    await charger.meter(transaction_id, 2_200)
    return charger, driver.id_tag, transaction_id, driver.subscription


async def _stop(
    charger: SimulatedCharger, id_tag: str, transaction_id: int, reason: str = "Local"
) -> None:
    await charger.meter(transaction_id, 3_900)
    result = await charger.call(
        call.StopTransaction(
            meter_stop=METER_STOP_WH,
            timestamp=now_iso(),
            transaction_id=transaction_id,
            id_tag=id_tag,
            reason=reason,
        )
    )
    assert result.id_tag_info["status"] == AuthorizationStatus.accepted


async def _assert_billed_once(
    platform: Platform, factory: SessionFactory, transaction_id: int, subscription: str
) -> Billed:
    workflow_id = await workflow_of(factory, transaction_id)

    async def done() -> Billed | None:
        result = await billed(factory, workflow_id)
        if result is None or result.state not in ("billed", "closed"):
            return None
        return result if lago_events(platform.sandbox, subscription) else None

    try:
        result = await eventually(done, timeout=180, interval=0.5, message="session billed")
    except AssertionError:
        raise AssertionError("session was not billed\n" + platform.logs()) from None
    assert result.energy_wh == TRUE_ENERGY_WH
    assert result.amount_minor == EXPECTED_AMOUNT_MINOR
    assert [e.kind for e in result.events if e.kind == "final"] == ["final"]
    assert await transactions_for(factory, workflow_id) == 1

    # Lago received each billing event exactly once, and their kWh add up to the true energy.
    events = lago_events(platform.sandbox, subscription)
    ids = [e["transaction_id"] for e in events]
    assert sorted(ids) == sorted(e.transaction_id for e in result.events)
    assert lago_wh(events) == TRUE_ENERGY_WH
    return result


async def test_session_billed_once_with_nothing_failing(
    platform: Platform,
    session_factory: SessionFactory,
    lago_billing: LagoBilling,
    charger_factory: list[SimulatedCharger],
) -> None:
    charger, id_tag, tx, subscription = await _begin(
        platform, session_factory, lago_billing, charger_factory
    )
    await _stop(charger, id_tag, tx)
    await _assert_billed_once(platform, session_factory, tx, subscription)


async def test_temporal_killed_and_restarted_mid_session(
    platform: Platform,
    session_factory: SessionFactory,
    lago_billing: LagoBilling,
    charger_factory: list[SimulatedCharger],
) -> None:
    charger, id_tag, tx, subscription = await _begin(
        platform, session_factory, lago_billing, charger_factory
    )
    platform.temporal.kill(signal.SIGKILL)
    # Temporal is gone: the charger is still answered, and what it says waits in the outbox.
    await _stop(charger, id_tag, tx)
    platform.temporal.start()  # same port, same SQLite file
    await _assert_billed_once(platform, session_factory, tx, subscription)


async def test_worker_killed_mid_session(
    platform: Platform,
    session_factory: SessionFactory,
    lago_billing: LagoBilling,
    charger_factory: list[SimulatedCharger],
) -> None:
    charger, id_tag, tx, subscription = await _begin(
        platform, session_factory, lago_billing, charger_factory
    )
    platform.worker.kill(signal.SIGKILL)
    await _stop(charger, id_tag, tx)
    platform.worker.start()
    await _assert_billed_once(platform, session_factory, tx, subscription)


async def test_gateway_restarted_charger_sends_queued_stop_after_reconnect(
    platform: Platform,
    session_factory: SessionFactory,
    lago_billing: LagoBilling,
    charger_factory: list[SimulatedCharger],
) -> None:
    charger, id_tag, tx, subscription = await _begin(
        platform, session_factory, lago_billing, charger_factory
    )
    platform.gateway.kill(signal.SIGKILL)
    await charger.disconnect()
    platform.gateway.start()
    # The charger comes back (power loss: it reboots) and sends the StopTransaction it queued.
    await charger.connect()
    await _stop(charger, id_tag, tx, reason="PowerLoss")
    await _assert_billed_once(platform, session_factory, tx, subscription)


async def test_duplicate_stop_after_gateway_restart_is_billed_once(
    platform: Platform,
    session_factory: SessionFactory,
    lago_billing: LagoBilling,
    charger_factory: list[SimulatedCharger],
) -> None:
    charger, id_tag, tx, subscription = await _begin(
        platform, session_factory, lago_billing, charger_factory
    )
    await _stop(charger, id_tag, tx)
    # The charger never saw the answer (gateway died) and resends the same stop after reconnect.
    platform.gateway.kill(signal.SIGKILL)
    await charger.disconnect()
    platform.gateway.start()
    await charger.connect()
    await _stop(charger, id_tag, tx)
    await _assert_billed_once(platform, session_factory, tx, subscription)


async def test_a_stop_delivered_again_after_the_session_closed_starts_no_second_run(
    platform: Platform,
    session_factory: SessionFactory,
    lago_billing: LagoBilling,
    charger_factory: list[SimulatedCharger],
) -> None:
    """The gateway died after Temporal took the stop's signal and before it marked the outbox
    row delivered: its successor delivers the row again, to a session already billed and closed.

    That used to start the workflow id again — a fresh run in ``requested`` that ignores the
    stop and then writes ``requested`` (later ``expired``) over the billed session's read model.
    """
    charger, id_tag, tx, subscription = await _begin(
        platform, session_factory, lago_billing, charger_factory
    )
    await _stop(charger, id_tag, tx)
    first = await _assert_billed_once(platform, session_factory, tx, subscription)

    client = await Client.connect(platform.env["POLARIS_TEMPORAL_ADDRESS"])
    handle = client.get_workflow_handle(first.workflow_id)

    async def closed() -> str | None:
        described = await handle.describe()
        done = described.status == WorkflowExecutionStatus.COMPLETED
        return described.run_id if done else None

    run_id = await eventually(closed, timeout=60, message="session workflow completed")

    # What a gateway killed between the signal and the mark leaves behind.
    async with session_factory.begin() as db:
        row_id = (
            await db.execute(
                text(
                    "UPDATE gateway_outbox SET delivered_at = NULL, last_error = NULL "
                    "WHERE workflow_id = :w AND kind = 'transaction_stopped' RETURNING id"
                ),
                {"w": first.workflow_id},
            )
        ).scalar_one()

    async def delivered_again() -> GatewayOutbox | None:
        async with session_factory() as db:
            row = await db.get(GatewayOutbox, row_id, populate_existing=True)
        return row if row is not None and row.delivered_at is not None else None

    row = await eventually(delivered_again, timeout=60, message="stop row delivered again")
    assert row.last_error == "workflow already closed; event dropped"
    described = await handle.describe()
    assert (described.run_id, described.status) == (run_id, WorkflowExecutionStatus.COMPLETED)
    again = await _assert_billed_once(platform, session_factory, tx, subscription)
    assert again.state == first.state
