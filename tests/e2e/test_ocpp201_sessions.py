"""OCPP 2.0.1 sessions through the real processes (gateway, worker, Temporal dev server) with a
Lago sandbox and real ``ocpp`` v201 charge points: each ending is billed exactly once, a 1.6 and
a 2.0.1 charger charge side by side on the same gateway, an offline transaction replayed after a
reconnect, a station that loses power and ends its transaction on reboot, the start button (free
vend), a typed card presented with the wrong type, and cards in one group."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ocpp.v16 import call as call16
from ocpp.v201 import call
from sqlalchemy import select, update

from activities.lago import LagoBilling
from db.engine import SessionFactory
from db.models import BillingEvent, Charger, ChargingSession, EvCard, Transaction
from db.ocpp201_models import Ocpp201Transaction, Ocpp201TransactionEvent
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
)
from tests.e2e.station201 import SimulatedStation201
from tests.gateway.station201 import at_minutes, energy, tx_event
from tests.helpers import eventually

pytestmark = pytest.mark.timeout(300)


async def _tx(factory: SessionFactory, cb: str, ocpp_tx: str) -> Transaction:
    async def bound() -> Transaction | None:
        async with factory() as db:
            return await db.scalar(
                select(Transaction).where(
                    Transaction.charge_box_id == cb, Transaction.ocpp_transaction_id == ocpp_tx
                )
            )

    return await eventually(bound, timeout=30, message=f"{ocpp_tx} bound to a session")


async def _journal(factory: SessionFactory, cb: str, ocpp_tx: str) -> Ocpp201Transaction:
    async with factory() as db:
        row = await db.scalar(
            select(Ocpp201Transaction).where(
                Ocpp201Transaction.charge_box_id == cb,
                Ocpp201Transaction.ocpp_transaction_id == ocpp_tx,
            )
        )
    assert row is not None
    return row


async def _billed_once(
    platform: Platform,
    factory: SessionFactory,
    workflow_id: str,
    subscription: str,
    energy_wh: int,
) -> Billed:
    async def done() -> Billed | None:
        result = await billed(factory, workflow_id)
        if result is None or result.state not in ("billed", "closed"):
            return None
        return result if lago_events(platform.sandbox, subscription) else None

    try:
        result = await eventually(done, timeout=180, interval=0.5, message="session billed")
    except AssertionError:
        state = await billed(factory, workflow_id)
        raise AssertionError(f"not billed: {state}\n{platform.logs()}") from None
    assert result.energy_wh == energy_wh
    assert [e.kind for e in result.events if e.kind == "final"] == ["final"]
    assert await transactions_for(factory, workflow_id) == 1
    events = lago_events(platform.sandbox, subscription)
    assert sorted(e["transaction_id"] for e in events) == sorted(
        e.transaction_id for e in result.events
    )
    assert lago_wh(events) == energy_wh
    return result


async def _station(platform: Platform, cb: str, stations: list[SimulatedStation201]) -> Any:
    station = SimulatedStation201(platform.gateway_url, cb)
    stations.append(station)
    boot = await station.connect()
    assert boot.status == "Accepted"
    return station


@pytest.fixture
async def stations() -> Any:
    made: list[SimulatedStation201] = []
    yield made
    for station in made:
        await station.disconnect()


async def test_a_1_6_and_a_2_0_1_charger_charge_side_by_side(
    platform: Platform,
    session_factory: SessionFactory,
    lago_billing: LagoBilling,
    charger_factory: list[SimulatedCharger],
    stations: list[SimulatedStation201],
) -> None:
    cb16 = await seed_charger(session_factory)
    cb201 = await seed_charger(session_factory)
    driver16 = await seed_driver(session_factory, lago_billing)
    driver201 = await seed_driver(session_factory, lago_billing)
    assert driver16.subscription and driver201.subscription
    charger = SimulatedCharger(platform.gateway_url, cb16)
    charger_factory.append(charger)
    await charger.connect()
    station = await _station(platform, cb201, stations)
    token = {"idToken": driver201.id_tag.lower(), "type": "ISO14443"}

    # Both start …
    assert (await charger.call(call16.Authorize(id_tag=driver16.id_tag))).id_tag_info[
        "status"
    ] == "Accepted"
    started16 = await charger.call(
        call16.StartTransaction(
            connector_id=1, id_tag=driver16.id_tag, meter_start=1_000, timestamp=now_iso()
        )
    )
    tx16 = int(started16.transaction_id)
    assert (await station.call(call.Authorize(id_token=token))).id_token_info[
        "status"
    ] == "Accepted"
    base = datetime.now(UTC) - timedelta(minutes=5)
    started = await station.call(
        tx_event(
            "Started",
            0,
            at_minutes(base, 0),
            "TX-SIDE",
            trigger="Authorized",
            state="Charging",
            id_token=token,
            evse=True,
            meter=[energy(2.5, at_minutes(base, 0), unit="kWh", context="Transaction.Begin")],
        )
    )
    assert started.id_token_info["status"] == "Accepted"
    # … both charge, interleaved …
    await charger.meter(tx16, 1_800)
    await station.call(
        tx_event(
            "Updated",
            1,
            at_minutes(base, 2),
            "TX-SIDE",
            meter=[energy(30, at_minutes(base, 2), multiplier=2, signed=True)],
        )
    )
    await charger.meter(tx16, 2_600)
    # … and both stop.
    await station.call(
        tx_event(
            "Ended",
            2,
            at_minutes(base, 4),
            "TX-SIDE",
            trigger="StopAuthorized",
            id_token=token,
            stopped_reason="Local",
            meter=[
                energy(4.2345, at_minutes(base, 4), unit="kWh", context="Transaction.End"),
            ],
        )
    )
    await charger.call(
        call16.StopTransaction(
            meter_stop=3_210, timestamp=now_iso(), transaction_id=tx16, id_tag=driver16.id_tag
        )
    )
    tx201 = await _tx(session_factory, cb201, "TX-SIDE")
    async with session_factory() as db:
        workflow16 = await db.scalar(select(Transaction.workflow_id).where(Transaction.id == tx16))
        chargers = {
            c.charge_box_id: c.ocpp_version
            for c in (
                await db.scalars(select(Charger).where(Charger.charge_box_id.in_([cb16, cb201])))
            ).all()
        }
    assert chargers == {cb16: "1.6", cb201: "2.0.1"}
    assert workflow16 is not None
    # 4.2345 kWh = 4234.5 Wh → 4235 (half up, once); 2.5 kWh = 2500 Wh.
    await _billed_once(
        platform, session_factory, tx201.workflow_id, driver201.subscription, 4_235 - 2_500
    )
    await _billed_once(platform, session_factory, workflow16, driver16.subscription, 2_210)


async def test_offline_transaction_replayed_after_reconnect_is_placed_in_order(
    platform: Platform,
    session_factory: SessionFactory,
    lago_billing: LagoBilling,
    stations: list[SimulatedStation201],
) -> None:
    cb = await seed_charger(session_factory)
    driver = await seed_driver(session_factory, lago_billing)
    assert driver.subscription is not None
    station = await _station(platform, cb, stations)
    await station.disconnect()
    # Offline: the station authorizes from its cache and queues the whole transaction.
    token = {"idToken": driver.id_tag, "type": "ISO14443"}
    base = datetime.now(UTC) - timedelta(minutes=40)
    station.queue = [
        tx_event(
            "Started",
            0,
            at_minutes(base, 0),
            "TX-OFF",
            trigger="Authorized",
            state="Charging",
            id_token=token,
            evse=True,
            offline=True,
            meter=[energy(10_000, at_minutes(base, 0), context="Transaction.Begin")],
        ),
        tx_event(
            "Updated",
            1,
            at_minutes(base, 10),
            "TX-OFF",
            state="SuspendedEV",
            trigger="ChargingStateChanged",
            offline=True,
            meter=[energy(11_000, at_minutes(base, 10))],
        ),
        tx_event(
            "Updated",
            2,
            at_minutes(base, 15),
            "TX-OFF",
            state="Charging",
            trigger="ChargingStateChanged",
            offline=True,
            meter=[energy(11_500, at_minutes(base, 15))],
        ),
        tx_event(
            "Ended",
            3,
            at_minutes(base, 30),
            "TX-OFF",
            trigger="EVCommunicationLost",
            stopped_reason="EVDisconnected",
            offline=True,
            meter=[energy(12_345, at_minutes(base, 30), context="Transaction.End")],
        ),
    ]
    assert (await station.connect(reason="PowerUp")).status == "Accepted"
    answers = await station.replay()
    assert answers[0].id_token_info["status"] == "Accepted"
    tx = await _tx(session_factory, cb, "TX-OFF")
    # The event times count, not the time they arrived.
    assert tx.started_at == datetime.fromisoformat(at_minutes(base, 0))
    assert tx.stopped_at == datetime.fromisoformat(at_minutes(base, 30))
    assert (tx.meter_start_wh, tx.meter_stop_wh, tx.stop_reason) == (
        10_000,
        12_345,
        "EVDisconnected",
    )
    journal = await _journal(session_factory, cb, "TX-OFF")
    assert journal.offline and journal.last_seq_no == 3
    async with session_factory() as db:
        outcomes = (
            await db.execute(
                select(Ocpp201TransactionEvent.seq_no, Ocpp201TransactionEvent.outcome)
                .where(
                    Ocpp201TransactionEvent.charge_box_id == cb,
                    Ocpp201TransactionEvent.ocpp_transaction_id == "TX-OFF",
                )
                .order_by(Ocpp201TransactionEvent.seq_no)
            )
        ).all()
    assert [tuple(o) for o in outcomes] == [(n, "applied") for n in range(4)]
    await _billed_once(platform, session_factory, tx.workflow_id, driver.subscription, 2_345)


async def test_station_that_loses_power_ends_the_transaction_on_reboot(
    platform: Platform,
    session_factory: SessionFactory,
    lago_billing: LagoBilling,
    stations: list[SimulatedStation201],
) -> None:
    cb = await seed_charger(session_factory)
    driver = await seed_driver(session_factory, lago_billing)
    assert driver.subscription is not None
    station = await _station(platform, cb, stations)
    token = {"idToken": driver.id_tag, "type": "ISO14443"}
    base = datetime.now(UTC) - timedelta(minutes=10)
    await station.call(
        tx_event(
            "Started",
            0,
            at_minutes(base, 0),
            "TX-PWR",
            trigger="Authorized",
            state="Charging",
            id_token=token,
            evse=True,
            meter=[energy(500, at_minutes(base, 0), context="Transaction.Begin")],
        )
    )
    await station.call(
        tx_event(
            "Updated", 1, at_minutes(base, 3), "TX-PWR", meter=[energy(900, at_minutes(base, 3))]
        )
    )
    # Power gone: the socket drops without a close handshake's worth of goodbye.
    await station.disconnect()
    # Reboot: a new boot, then the transaction ended with the last register it had saved.
    assert (await station.connect(reason="PowerUp")).status == "Accepted"
    await station.call(
        tx_event(
            "Ended",
            2,
            at_minutes(base, 6),
            "TX-PWR",
            trigger="AbnormalCondition",
            stopped_reason="PowerLoss",
            meter=[energy(1_250, at_minutes(base, 3), context="Transaction.End")],
        )
    )
    tx = await _tx(session_factory, cb, "TX-PWR")
    assert (tx.meter_stop_wh, tx.stop_reason) == (1_250, "PowerLoss")
    await _billed_once(platform, session_factory, tx.workflow_id, driver.subscription, 750)


async def test_start_button_free_vend_is_recorded_flagged_and_never_billed(
    platform: Platform,
    session_factory: SessionFactory,
    stations: list[SimulatedStation201],
) -> None:
    cb = await seed_charger(session_factory)
    async with session_factory.begin() as db:
        await db.execute(update(Charger).where(Charger.charge_box_id == cb).values(free_vend=True))
    station = await _station(platform, cb, stations)
    button = {"idToken": "", "type": "NoAuthorization"}
    base = datetime.now(UTC) - timedelta(minutes=10)
    started = await station.call(
        tx_event(
            "Started",
            0,
            at_minutes(base, 0),
            "TX-FREE",
            trigger="Authorized",
            state="Charging",
            id_token=button,
            evse=True,
            meter=[energy(100, at_minutes(base, 0), context="Transaction.Begin")],
        )
    )
    assert started.id_token_info["status"] == "Accepted"
    await station.call(
        tx_event(
            "Ended",
            1,
            at_minutes(base, 5),
            "TX-FREE",
            trigger="StopAuthorized",
            stopped_reason="Local",
            meter=[energy(1_100, at_minutes(base, 5), context="Transaction.End")],
        )
    )
    tx = await _tx(session_factory, cb, "TX-FREE")
    assert "free_vend" in (await _journal(session_factory, cb, "TX-FREE")).flags

    async def settled() -> ChargingSession | None:
        async with session_factory() as db:
            row = await db.get(ChargingSession, tx.workflow_id)
        return row if row is not None and row.state in ("billed", "closed") else None

    try:
        session = await eventually(settled, timeout=180, message="free vend settled")
    except AssertionError:
        raise AssertionError(platform.logs()) from None
    assert session.user_id is None
    async with session_factory() as db:
        events = (
            await db.scalars(select(BillingEvent).where(BillingEvent.workflow_id == tx.workflow_id))
        ).all()
    # The energy is on record; no customer is ever charged for it.
    assert all(e.lago_customer_external_id is None and e.sent_at is None for e in events)


async def test_typed_card_presented_with_another_type_is_refused(
    platform: Platform,
    session_factory: SessionFactory,
    lago_billing: LagoBilling,
    stations: list[SimulatedStation201],
) -> None:
    cb = await seed_charger(session_factory)
    driver = await seed_driver(session_factory, lago_billing)
    async with session_factory.begin() as db:
        await db.execute(
            update(EvCard).where(EvCard.id_tag == driver.id_tag).values(token_type="ISO14443")
        )
    station = await _station(platform, cb, stations)
    wrong = {"idToken": driver.id_tag, "type": "eMAID"}
    assert (await station.call(call.Authorize(id_token=wrong))).id_token_info["status"] == "Invalid"
    base = datetime.now(UTC) - timedelta(minutes=5)
    started = await station.call(
        tx_event(
            "Started",
            0,
            at_minutes(base, 0),
            "TX-TYPE",
            trigger="Authorized",
            id_token=wrong,
            evse=True,
            meter=[energy(100, at_minutes(base, 0), context="Transaction.Begin")],
        )
    )
    assert started.id_token_info["status"] == "Invalid"
    await station.call(
        tx_event(
            "Ended",
            1,
            at_minutes(base, 1),
            "TX-TYPE",
            trigger="Deauthorized",
            stopped_reason="DeAuthorized",
            meter=[energy(150, at_minutes(base, 1), context="Transaction.End")],
        )
    )
    journal = await _journal(session_factory, cb, "TX-TYPE")
    assert journal.transaction_id is None and "unauthorized" in journal.flags
    right = {"idToken": driver.id_tag, "type": "ISO14443"}
    assert (await station.call(call.Authorize(id_token=right))).id_token_info[
        "status"
    ] == "Accepted"


async def test_cards_in_one_group_stop_each_others_session(
    platform: Platform,
    session_factory: SessionFactory,
    lago_billing: LagoBilling,
    stations: list[SimulatedStation201],
) -> None:
    cb = await seed_charger(session_factory)
    starter = await seed_driver(session_factory, lago_billing)
    partner = await seed_driver(session_factory, lago_billing)
    assert starter.subscription is not None
    group = f"G{starter.public_id}"
    async with session_factory.begin() as db:
        db.add(EvCard(id_tag=group, token_type="Central"))
        await db.flush()
        await db.execute(
            update(EvCard)
            .where(EvCard.id_tag.in_([starter.id_tag, partner.id_tag]))
            .values(parent_id_tag=group)
        )
    station = await _station(platform, cb, stations)
    start_token = {"idToken": starter.id_tag, "type": "ISO14443"}
    stop_token = {"idToken": partner.id_tag, "type": "ISO14443"}
    authorized = await station.call(call.Authorize(id_token=start_token))
    assert authorized.id_token_info["status"] == "Accepted"
    assert authorized.id_token_info["group_id_token"] == {"id_token": group, "type": "Central"}
    base = datetime.now(UTC) - timedelta(minutes=5)
    await station.call(
        tx_event(
            "Started",
            0,
            at_minutes(base, 0),
            "TX-GRP",
            trigger="Authorized",
            state="Charging",
            id_token=start_token,
            evse=True,
            meter=[energy(7_000, at_minutes(base, 0), context="Transaction.Begin")],
        )
    )
    # The partner's card (same group) ends the session: the station checks the group itself.
    ended = await station.call(
        tx_event(
            "Ended",
            1,
            at_minutes(base, 4),
            "TX-GRP",
            trigger="StopAuthorized",
            id_token=stop_token,
            stopped_reason="Local",
            meter=[energy(8_111, at_minutes(base, 4), context="Transaction.End")],
        )
    )
    assert ended.id_token_info["status"] == "Accepted"
    assert ended.id_token_info["group_id_token"] == {"id_token": group, "type": "Central"}
    tx = await _tx(session_factory, cb, "TX-GRP")
    assert (tx.id_tag, tx.stop_id_tag) == (starter.id_tag, partner.id_tag)
    # Billed once, to the card that started it.
    await _billed_once(platform, session_factory, tx.workflow_id, starter.subscription, 1_111)
    assert partner.subscription is not None
    assert lago_events(platform.sandbox, partner.subscription) == []
