"""Poison values from a charger, sent by a real ``ocpp`` charge point to a real gateway.

Values no working charger sends (a register of 10^28 Wh, past BIGINT, negative; a timestamp in
the year 10000 or weeks away from now; ids past what a column holds) are refused with
``PropertyConstraintViolation`` and nothing of the message is stored; the connection survives.
A StopTransaction is the exception: it is always acknowledged, kept, and its untrusted values are
replaced and flagged (the session then finishes with those flags: ``tests/e2e/test_poison.py``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ocpp.exceptions import PropertyConstraintViolationError
from ocpp.v16 import call
from sqlalchemy import func, select

from db.engine import SessionFactory
from db.models import Connector, GatewayOutbox, MeterSample, Transaction
from gateway.main import Gateway
from tests.gateway.conftest import TestCharger, charger_session, seed_card, seed_charger
from tests.helpers import ocpp_ts

# 23:59 at UTC-5 on the last day of 9999 is the year 10000 in UTC: Python parses it, PostgreSQL
# stores it, and the row could no longer be read back.
YEAR_10000 = "9999-12-31T23:59:59-05:00"
BIGINT_PAST = 2**63


async def _alive(cp: TestCharger) -> None:
    """The connection survived the refusal: the charger is still answered."""
    assert (await cp.call(call.Heartbeat(), suppress=False)).current_time


async def _transactions(sf: SessionFactory, cb: str) -> int:
    async with sf() as s:
        count = await s.scalar(
            select(func.count()).select_from(Transaction).where(Transaction.charge_box_id == cb)
        )
    return int(count or 0)


@pytest.mark.parametrize(
    ("meter_start", "timestamp", "connector_id"),
    [
        pytest.param(10**28, None, 1, id="meter-start-1e28"),
        pytest.param(BIGINT_PAST, None, 1, id="meter-start-past-bigint"),
        pytest.param(10**12 + 1, None, 1, id="meter-start-past-max-register"),
        pytest.param(-1, None, 1, id="meter-start-negative"),
        pytest.param(0, YEAR_10000, 1, id="timestamp-year-10000"),
        pytest.param(0, "0001-01-01T00:00:00+14:00", 1, id="timestamp-year-0"),
        pytest.param(0, "past", 1, id="timestamp-40-days-ago"),
        pytest.param(0, "future", 1, id="timestamp-an-hour-ahead"),
        pytest.param(0, None, 2**40, id="connector-past-integer"),
    ],
)
async def test_poison_start_transaction_is_refused(
    gateway: Gateway,
    session_factory: SessionFactory,
    meter_start: int,
    timestamp: str | None,
    connector_id: int,
) -> None:
    cb = await seed_charger(session_factory)
    id_tag = await seed_card(session_factory)
    stamp = {
        None: ocpp_ts(),
        "past": ocpp_ts(-40 * 86400),
        "future": ocpp_ts(3600),
    }.get(timestamp, timestamp)
    async with charger_session(gateway, cb) as cp:
        with pytest.raises(PropertyConstraintViolationError):
            await cp.call(
                call.StartTransaction(
                    connector_id=connector_id,
                    id_tag=id_tag,
                    meter_start=meter_start,
                    timestamp=stamp,
                ),
                suppress=False,
            )
        await _alive(cp)
        # The same charger's next, sane start is accepted.
        good = await cp.call(
            call.StartTransaction(
                connector_id=1, id_tag=id_tag, meter_start=0, timestamp=ocpp_ts()
            ),
            suppress=False,
        )
        assert good.transaction_id > 0
    assert await _transactions(session_factory, cb) == 1


def _meter(value: str, *, unit: str = "Wh", timestamp: str | None = None) -> list[dict[str, Any]]:
    return [
        {
            "timestamp": timestamp or ocpp_ts(-1),
            "sampledValue": [
                {"value": value, "unit": unit, "measurand": "Energy.Active.Import.Register"}
            ],
        }
    ]


@pytest.mark.parametrize(
    "meter_value",
    [
        pytest.param(_meter("1e28"), id="1e28-wh"),
        pytest.param(_meter("1E+28", unit="kWh"), id="1e28-kwh"),
        pytest.param(_meter(str(BIGINT_PAST)), id="past-bigint"),
        pytest.param(_meter("9300000000", unit="kWh"), id="past-max-register"),
        pytest.param(_meter("-5"), id="negative"),
        pytest.param(_meter("1500", timestamp=YEAR_10000), id="timestamp-year-10000"),
        pytest.param(_meter("1500", timestamp="2000-01-01T00:00:00Z"), id="timestamp-2000"),
    ],
)
async def test_poison_meter_values_are_refused_and_nothing_is_stored(
    gateway: Gateway, session_factory: SessionFactory, meter_value: list[dict[str, Any]]
) -> None:
    cb = await seed_charger(session_factory)
    id_tag = await seed_card(session_factory)
    async with charger_session(gateway, cb) as cp:
        start = await cp.call(
            call.StartTransaction(
                connector_id=1, id_tag=id_tag, meter_start=1000, timestamp=ocpp_ts(-60)
            ),
            suppress=False,
        )
        tx_id = start.transaction_id
        with pytest.raises(PropertyConstraintViolationError):
            await cp.call(
                call.MeterValues(connector_id=1, transaction_id=tx_id, meter_value=meter_value),
                suppress=False,
            )
        await _alive(cp)
        await cp.call(
            call.MeterValues(connector_id=1, transaction_id=tx_id, meter_value=_meter("1200")),
            suppress=False,
        )
    async with session_factory() as s:
        stored = (
            await s.execute(
                select(MeterSample.energy_wh, MeterSample.flag).where(
                    MeterSample.transaction_id == tx_id
                )
            )
        ).all()
    assert [tuple(r) for r in stored] == [(1200, None)]


async def test_meter_values_for_an_impossible_transaction_id_are_refused(
    gateway: Gateway, session_factory: SessionFactory
) -> None:
    cb = await seed_charger(session_factory)
    async with charger_session(gateway, cb) as cp:
        with pytest.raises(PropertyConstraintViolationError):
            await cp.call(
                call.MeterValues(
                    connector_id=1, transaction_id=BIGINT_PAST, meter_value=_meter("1200")
                ),
                suppress=False,
            )
        await _alive(cp)


async def test_status_with_a_poison_timestamp_is_stored_at_receive_time(
    gateway: Gateway, session_factory: SessionFactory
) -> None:
    cb = await seed_charger(session_factory)
    before = datetime.now(UTC) - timedelta(seconds=5)
    async with charger_session(gateway, cb) as cp:
        await cp.call(
            call.StatusNotification(
                connector_id=1, error_code="NoError", status="Available", timestamp=YEAR_10000
            ),
            suppress=False,
        )
        await _alive(cp)
    async with session_factory() as s:
        connector = await s.get(Connector, (cb, 1))  # readable: the year 10000 was not stored
    assert connector is not None and connector.status == "Available"
    assert connector.status_at is not None and connector.status_at >= before


async def test_poison_stop_is_acknowledged_kept_and_flagged(
    gateway: Gateway, session_factory: SessionFactory
) -> None:
    cb = await seed_charger(session_factory)
    id_tag = await seed_card(session_factory)
    async with charger_session(gateway, cb) as cp:
        start = await cp.call(
            call.StartTransaction(
                connector_id=1, id_tag=id_tag, meter_start=1000, timestamp=ocpp_ts(-600)
            ),
            suppress=False,
        )
        tx_id = start.transaction_id
        await cp.call(
            call.MeterValues(
                connector_id=1, transaction_id=tx_id, meter_value=_meter("1600", timestamp=None)
            ),
            suppress=False,
        )
        stop = await cp.call(
            call.StopTransaction(
                meter_stop=10**28,
                timestamp=YEAR_10000,
                transaction_id=tx_id,
                id_tag=id_tag,
                transaction_data=_meter("1e28"),
            ),
            suppress=False,
        )
        # Acknowledged like every stop: a CallError would make the charger resend it forever.
        assert stop.id_tag_info["status"] == "Accepted"
        await _alive(cp)
        repeat = await cp.call(
            call.StopTransaction(meter_stop=10**28, timestamp=YEAR_10000, transaction_id=tx_id),
            suppress=False,
        )
        assert repeat.id_tag_info is None
        impossible = await cp.call(
            call.StopTransaction(meter_stop=5, timestamp=ocpp_ts(), transaction_id=BIGINT_PAST),
            suppress=False,
        )
        assert impossible.id_tag_info is None
        await _alive(cp)

    async with session_factory() as s:
        tx = await s.get(Transaction, tx_id)  # readable: nothing unstorable was stored
        assert tx is not None and tx.stopped_at is not None
        # Billed up to the last register that passed every check, at the time we heard the stop.
        assert tx.meter_stop_wh == 1600
        assert abs((tx.stopped_at - datetime.now(UTC)).total_seconds()) < 600
        assert tx.stop_flags == [
            "meter_stop_out_of_range",
            "stop_time_out_of_range",
            "stop_samples_out_of_range",
        ]
        assert tx.stop_payload is not None
        assert tx.stop_payload["meterStop"] == 10**28
        assert tx.stop_payload["timestamp"] == YEAR_10000
        stopped = (
            await s.execute(
                select(GatewayOutbox.payload).where(
                    GatewayOutbox.workflow_id == tx.workflow_id,
                    GatewayOutbox.kind == "transaction_stopped",
                )
            )
        ).scalar_one()
        samples = await s.scalar(
            select(func.count()).select_from(MeterSample).where(MeterSample.transaction_id == tx_id)
        )
    assert stopped["signal"]["meter_stop_wh"] == 1600
    assert stopped["signal"]["flags"] == tx.stop_flags
    assert samples == 1  # the poison transactionData sample was dropped
