"""Poison input through the real processes (gateway, worker, Temporal, the Lago sandbox): a
session fed a poison stop or implausible energy still reaches its final state, flagged, with
nothing implausible billed; and an idTag never shows in a workflow id, a Lago event id or a
gateway log line.

The refusals themselves (``PropertyConstraintViolation`` per value) are in
``tests/gateway/test_poison.py``; the data-error path of the worker is in
``tests/workflows/test_data_error.py``.
"""

from __future__ import annotations

import json

import pytest
from ocpp.v16 import call
from ocpp.v16.enums import AuthorizationStatus
from sqlalchemy import update

from activities.lago import LagoBilling
from db.engine import SessionFactory
from db.models import Charger, ChargingSession
from tests.e2e.conftest import (
    Platform,
    SimulatedCharger,
    billed,
    lago_events,
    seed_charger,
    seed_driver,
    workflow_of,
)
from tests.e2e.test_cli_sessions import polaris
from tests.helpers import eventually, ocpp_ts

pytestmark = pytest.mark.timeout(300)

YEAR_10000 = "9999-12-31T23:59:59-05:00"


async def _closed(factory: SessionFactory, workflow_id: str, platform: Platform) -> None:
    async def done() -> bool:
        result = await billed(factory, workflow_id)
        return result is not None and result.state == "closed"

    try:
        await eventually(done, timeout=120, message="session closed")
    except AssertionError:
        raise AssertionError(f"not closed\n{platform.logs()}") from None


async def _row(factory: SessionFactory, workflow_id: str) -> ChargingSession:
    async with factory() as db:
        row = await db.get(ChargingSession, workflow_id)
    assert row is not None
    return row


async def _tap_and_start(
    charger: SimulatedCharger, id_tag: str, *, meter_start: int, at: str
) -> int:
    authorized = await charger.call(call.Authorize(id_tag=id_tag))
    assert authorized.id_tag_info["status"] == AuthorizationStatus.accepted
    started = await charger.call(
        call.StartTransaction(connector_id=1, id_tag=id_tag, meter_start=meter_start, timestamp=at)
    )
    assert started.id_tag_info["status"] == AuthorizationStatus.accepted
    return int(started.transaction_id)


async def test_poison_stop_is_accepted_and_the_session_closes_flagged(
    platform: Platform,
    session_factory: SessionFactory,
    lago_billing: LagoBilling,
    charger_factory: list[SimulatedCharger],
) -> None:
    cb = await seed_charger(session_factory)
    driver = await seed_driver(session_factory, lago_billing)
    charger = SimulatedCharger(platform.gateway_url, cb)
    charger_factory.append(charger)
    await charger.connect()
    tx = await _tap_and_start(charger, driver.id_tag, meter_start=1_000, at=ocpp_ts(-5))
    await charger.meter(tx, 1_600)
    stop = await charger.call(
        call.StopTransaction(
            meter_stop=10**28, timestamp=YEAR_10000, transaction_id=tx, id_tag=driver.id_tag
        )
    )
    assert stop.id_tag_info["status"] == AuthorizationStatus.accepted
    workflow_id = await workflow_of(session_factory, tx)
    await _closed(session_factory, workflow_id, platform)

    row = await _row(session_factory, workflow_id)
    assert {"meter_stop_out_of_range", "stop_time_out_of_range"} <= set(row.flags)
    assert row.energy_wh == 600  # up to the last register that passed every check
    result = await billed(session_factory, workflow_id)
    assert result is not None and result.energy_wh == 600
    shown = await polaris(platform, "sessions", "show", workflow_id)
    # The operator sees the flags.
    assert shown.returncode == 0, shown.stderr
    assert "flags        meter_stop_out_of_range, stop_time_out_of_range" in shown.stdout


async def test_implausible_energy_is_flagged_and_not_billed(
    platform: Platform,
    session_factory: SessionFactory,
    lago_billing: LagoBilling,
    charger_factory: list[SimulatedCharger],
) -> None:
    cb = await seed_charger(session_factory)
    async with session_factory() as db, db.begin():
        # A 22 kW wallbox: at most 22 000 Wh per hour (+ the tolerance).
        await db.execute(
            update(Charger).where(Charger.charge_box_id == cb).values(max_power_w=22_000)
        )
    driver = await seed_driver(session_factory, lago_billing)
    charger = SimulatedCharger(platform.gateway_url, cb)
    charger_factory.append(charger)
    await charger.connect()
    # Started ten minutes ago: at most ~3.7 kWh (+1 kWh tolerance) can have flowed since.
    tx = await _tap_and_start(charger, driver.id_tag, meter_start=0, at=ocpp_ts(-600))
    await charger.meter(tx, 50_000)
    stop = await charger.call(
        call.StopTransaction(
            meter_stop=60_000, timestamp=ocpp_ts(), transaction_id=tx, id_tag=driver.id_tag
        )
    )
    assert stop.id_tag_info["status"] == AuthorizationStatus.accepted
    workflow_id = await workflow_of(session_factory, tx)
    await _closed(session_factory, workflow_id, platform)

    row = await _row(session_factory, workflow_id)
    assert "implausible_energy" in row.flags
    result = await billed(session_factory, workflow_id)
    assert result is not None and result.energy_wh == 0
    shown = await polaris(platform, "sessions", "show", workflow_id, "--json")
    assert "implausible_energy" in json.loads(shown.stdout)["flags"]


async def test_id_tag_never_shows_in_workflow_ids_lago_or_gateway_logs(
    platform: Platform,
    session_factory: SessionFactory,
    lago_billing: LagoBilling,
    charger_factory: list[SimulatedCharger],
) -> None:
    cb = await seed_charger(session_factory)
    driver = await seed_driver(session_factory, lago_billing)
    assert driver.subscription is not None
    charger = SimulatedCharger(platform.gateway_url, cb)
    charger_factory.append(charger)
    await charger.connect()
    tx = await _tap_and_start(charger, driver.id_tag, meter_start=2_000, at=ocpp_ts(-5))
    await charger.meter(tx, 2_500)
    await charger.call(
        call.StopTransaction(
            meter_stop=3_000, timestamp=ocpp_ts(), transaction_id=tx, id_tag=driver.id_tag
        )
    )
    workflow_id = await workflow_of(session_factory, tx)
    await _closed(session_factory, workflow_id, platform)

    assert workflow_id.startswith(f"session:{cb}:tap:")
    assert driver.id_tag not in workflow_id
    events = await eventually(
        lambda: lago_events(platform.sandbox, driver.subscription or ""), message="Lago events"
    )
    ids = [e["transaction_id"] for e in events]
    assert ids and all(i.startswith(f"{workflow_id}:") for i in ids)
    assert not [i for i in ids if driver.id_tag in i]
    # The gateway's own log lines. The ocpp library's frame dumps ("receive message" / "send")
    # carry the raw frames and are hashed by the frame-logging control, not by the ids here.
    lines = [
        line
        for line in platform.gateway.output().splitlines()
        if "receive message" not in line and ": send " not in line
    ]
    assert lines and not [line for line in lines if driver.id_tag in line]
