"""OCPP 2.0.1 TransactionEvent onto the journal and the session signals (real gateway, real
Temporal with the recording session stand-in, real v201 charge points)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ocpp.v201 import call
from sqlalchemy import select
from temporalio.client import Client

from activities.sessions import ChargerLivenessInput, SessionActivities
from db.engine import SessionFactory
from db.models import GatewayOutbox, Transaction
from db.ocpp201_models import Ocpp201Transaction, Ocpp201TransactionEvent
from gateway.main import Gateway
from tests.gateway.conftest import seed_card, seed_charger
from tests.gateway.station201 import at_minutes, energy, station, tx_event
from tests.helpers import eventually


async def _tx(sf: SessionFactory, cb: str, ocpp_tx: str) -> Transaction:
    async with sf() as s:
        row = await s.scalar(
            select(Transaction).where(
                Transaction.charge_box_id == cb, Transaction.ocpp_transaction_id == ocpp_tx
            )
        )
    assert row is not None
    return row


async def _signals(client: Client, workflow_id: str, last: str) -> list[list[object]]:
    handle = client.get_workflow_handle(workflow_id)

    async def delivered() -> list[list[object]]:
        events: list[list[object]] = await handle.query("events")
        assert events and events[-1][0] == last
        return events

    return await eventually(delivered, timeout=30)


async def test_token_first_with_multipliers_and_signed_values(
    gateway: Gateway, session_factory: SessionFactory, temporal_client: Client
) -> None:
    cb = await seed_charger(session_factory)
    card = await seed_card(session_factory)
    base = datetime.now(UTC) - timedelta(hours=2)
    token = {"idToken": card.lower(), "type": "ISO14443"}  # case-insensitive
    async with station(gateway, cb) as cp:
        auth = await cp.call(call.Authorize(id_token=token))
        assert auth.id_token_info["status"] == "Accepted"
        started = await cp.call(
            tx_event(
                "Started",
                0,
                at_minutes(base, 0),
                "TX-A",
                trigger="Authorized",
                state="EVConnected",
                id_token=token,
                evse=True,
                meter=[
                    energy(1.0005, at_minutes(base, 0), unit="kWh", context="Transaction.Begin")
                ],
            )
        )
        assert started.id_token_info["status"] == "Accepted"
        updated = await cp.call(
            tx_event(
                "Updated",
                1,
                at_minutes(base, 10),
                "TX-A",
                trigger="ChargingStateChanged",
                state="Charging",
                meter=[energy(25, at_minutes(base, 10), multiplier=2, signed=True)],
            )
        )
        assert updated.id_token_info is None
        await cp.call(
            tx_event(
                "Ended",
                2,
                at_minutes(base, 30),
                "TX-A",
                trigger="StopAuthorized",
                id_token=token,
                stopped_reason="Local",
                meter=[energy(4.25, at_minutes(base, 30), unit="kWh", context="Transaction.End")],
            )
        )
    tx = await _tx(session_factory, cb, "TX-A")
    # 1.0005 kWh = 1000.5 Wh → 1001 (half up, once); 25 × 10² Wh; 4.25 kWh.
    assert (tx.meter_start_wh, tx.meter_stop_wh, tx.stop_reason) == (1001, 4250, "Local")
    assert (tx.ocpp_version, tx.connector_id, tx.auth_status) == ("2.0.1", 1, "Accepted")
    assert tx.workflow_id.startswith(f"session:{cb}:tap:")  # joined the Authorize's session
    events = await _signals(temporal_client, tx.workflow_id, "transaction_stopped")
    kinds = [e[0] for e in events]
    assert kinds[0] == "transaction_started"
    assert ["connector_status", "Charging"] in [[e[0], e[2]] for e in events]
    # Every register is queued as progress; one the relay reaches after a later progress or the
    # stop was queued is superseded (not signalled), so the session hears them in order, maybe
    # not all of them.
    async with session_factory() as s:
        progress = (
            await s.execute(
                select(GatewayOutbox.id, GatewayOutbox.payload, GatewayOutbox.last_error)
                .where(
                    GatewayOutbox.workflow_id == tx.workflow_id,
                    GatewayOutbox.kind == "meter_progress",
                )
                .order_by(GatewayOutbox.id)
            )
        ).all()
    assert [p.payload["signal"]["energy_register_wh"] for p in progress] == [1001, 2500, 4250]
    heard = {e[1]: e[2] for e in events if e[0] == "meter_progress"}
    for p in progress:
        if p.id not in heard:
            assert p.last_error == "superseded by a later row; not signalled"
    assert events[-1][2] == 4250


async def test_plug_in_first_joins_when_the_token_arrives(
    gateway: Gateway, session_factory: SessionFactory, temporal_client: Client
) -> None:
    cb = await seed_charger(session_factory)
    card = await seed_card(session_factory)
    base = datetime.now(UTC) - timedelta(hours=1)
    async with station(gateway, cb) as cp:
        started = await cp.call(
            tx_event(
                "Started",
                0,
                at_minutes(base, 0),
                "TX-P",
                trigger="CablePluggedIn",
                state="EVConnected",
                evse=True,
                meter=[energy(500, at_minutes(base, 0), context="Transaction.Begin")],
            )
        )
        assert started.id_token_info is None
        async with session_factory() as s:
            bound = await s.scalar(
                select(Transaction.id).where(
                    Transaction.charge_box_id == cb, Transaction.ocpp_transaction_id == "TX-P"
                )
            )
        assert bound is None  # no session before authorization
        auth = await cp.call(
            tx_event(
                "Updated",
                1,
                at_minutes(base, 1),
                "TX-P",
                trigger="Authorized",
                id_token={"idToken": card, "type": "ISO14443"},
            )
        )
        assert auth.id_token_info["status"] == "Accepted"
        await cp.call(
            tx_event(
                "Ended",
                2,
                at_minutes(base, 20),
                "TX-P",
                trigger="EVCommunicationLost",
                stopped_reason="EVDisconnected",
                meter=[energy(2500, at_minutes(base, 20), context="Transaction.End")],
            )
        )
    tx = await _tx(session_factory, cb, "TX-P")
    assert (tx.meter_start_wh, tx.meter_stop_wh, tx.stop_reason) == (500, 2500, "EVDisconnected")
    assert tx.started_at == base.replace(microsecond=(base.microsecond // 1000) * 1000)
    assert tx.workflow_id == f"session:{cb}:tx:TX-P"
    events = await _signals(temporal_client, tx.workflow_id, "transaction_stopped")
    assert events[0][0] == "transaction_started" and events[-1][2] == 2500


async def test_duplicates_out_of_order_and_events_after_ended(
    gateway: Gateway, session_factory: SessionFactory, temporal_client: Client
) -> None:
    cb = await seed_charger(session_factory)
    card = await seed_card(session_factory)
    token = {"idToken": card, "type": "ISO14443"}
    base = datetime.now(UTC) - timedelta(hours=1)
    started = tx_event(
        "Started",
        0,
        at_minutes(base, 0),
        "TX-D",
        trigger="Authorized",
        id_token=token,
        evse=True,
        meter=[energy(100, at_minutes(base, 0), context="Transaction.Begin")],
    )
    async with station(gateway, cb) as cp:
        first = await cp.call(started)
        again = await cp.call(started)  # the charger never saw our answer
        assert first.id_token_info == again.id_token_info
        await cp.call(tx_event("Updated", 3, at_minutes(base, 15), "TX-D", state="SuspendedEV"))
        # seqNo 2 arrives after 3 (offline queue): journaled, never moves the state back.
        await cp.call(
            tx_event(
                "Updated",
                2,
                at_minutes(base, 10),
                "TX-D",
                state="Charging",
                meter=[energy(600, at_minutes(base, 10))],
                offline=True,
            )
        )
        await cp.call(
            tx_event(
                "Ended",
                4,
                at_minutes(base, 20),
                "TX-D",
                stopped_reason="Local",
                meter=[energy(900, at_minutes(base, 20), context="Transaction.End")],
            )
        )
        late = await cp.call(
            tx_event(
                "Updated",
                5,
                at_minutes(base, 25),
                "TX-D",
                id_token=token,
                meter=[energy(5000, at_minutes(base, 25))],
            )
        )
        assert late.id_token_info["status"] == "Accepted"  # answered, changes nothing
    tx = await _tx(session_factory, cb, "TX-D")
    assert (tx.meter_start_wh, tx.meter_stop_wh) == (100, 900)
    async with session_factory() as s:
        journal = (
            await s.execute(
                select(Ocpp201TransactionEvent.seq_no, Ocpp201TransactionEvent.outcome)
                .where(
                    Ocpp201TransactionEvent.charge_box_id == cb,
                    Ocpp201TransactionEvent.ocpp_transaction_id == "TX-D",
                )
                .order_by(Ocpp201TransactionEvent.id)
            )
        ).all()
        state = await s.scalar(
            select(Ocpp201Transaction.charging_state).where(
                Ocpp201Transaction.charge_box_id == cb,
                Ocpp201Transaction.ocpp_transaction_id == "TX-D",
            )
        )
    assert [tuple(r) for r in journal] == [
        (0, "applied"),
        (3, "applied"),
        (2, "out_of_order"),
        (4, "applied"),
        (5, "after_end"),
    ]
    assert state == "SuspendedEV"
    events = await _signals(temporal_client, tx.workflow_id, "transaction_stopped")
    assert [e[0] for e in events].count("transaction_started") == 1
    assert [e[0] for e in events].count("transaction_stopped") == 1


async def test_ended_without_authorization_is_flagged_and_opens_no_session(
    gateway: Gateway, session_factory: SessionFactory
) -> None:
    cb = await seed_charger(session_factory)
    base = datetime.now(UTC) - timedelta(minutes=30)
    async with station(gateway, cb) as cp:
        await cp.call(
            tx_event(
                "Started",
                0,
                at_minutes(base, 0),
                "TX-U",
                trigger="CablePluggedIn",
                evse=True,
                meter=[energy(10, at_minutes(base, 0), context="Transaction.Begin")],
            )
        )
        unknown = await cp.call(
            tx_event(
                "Updated",
                1,
                at_minutes(base, 1),
                "TX-U",
                trigger="Authorized",
                id_token={"idToken": "NOSUCHCARD", "type": "ISO14443"},
            )
        )
        assert unknown.id_token_info["status"] == "Invalid"
        await cp.call(
            tx_event("Ended", 2, at_minutes(base, 2), "TX-U", stopped_reason="DeAuthorized")
        )
    async with session_factory() as s:
        row = await s.scalar(
            select(Ocpp201Transaction).where(
                Ocpp201Transaction.charge_box_id == cb,
                Ocpp201Transaction.ocpp_transaction_id == "TX-U",
            )
        )
        bound = await s.scalar(select(Transaction.id).where(Transaction.charge_box_id == cb))
    assert row is not None and row.transaction_id is None and "unauthorized" in row.flags
    assert bound is None


async def test_a_quiet_open_2_0_1_transaction_counts_as_charging_for_the_watchdog(
    gateway: Gateway, session_factory: SessionFactory
) -> None:
    """2.0.1 connector statuses (Occupied …) carry no charging state: the watchdog's liveness
    check must not take a live station's open transaction for a forgotten one."""
    cb = await seed_charger(session_factory)
    card = await seed_card(session_factory)
    activities = SessionActivities(session_factory)
    check = ChargerLivenessInput(charge_box_id=cb, silent_after_s=600, connector_id=1)
    base = datetime.now(UTC) - timedelta(minutes=10)
    async with station(gateway, cb) as cp:
        await cp.call(
            call.StatusNotification(
                timestamp=at_minutes(base, 0),
                connector_status="Occupied",
                evse_id=1,
                connector_id=1,
            )
        )
        await cp.call(
            tx_event(
                "Started",
                0,
                at_minutes(base, 0),
                "TX-Q",
                trigger="Authorized",
                state="Charging",
                id_token={"idToken": card, "type": "ISO14443"},
                evse=True,
                meter=[energy(100, at_minutes(base, 0), context="Transaction.Begin")],
            )
        )
        live = await activities.check_charger_liveness(check)
        assert live.alive and live.connector_charging
        await cp.call(
            tx_event(
                "Ended",
                1,
                at_minutes(base, 5),
                "TX-Q",
                stopped_reason="Local",
                meter=[energy(200, at_minutes(base, 5), context="Transaction.End")],
            )
        )
        over = await activities.check_charger_liveness(check)
        assert over.alive and not over.connector_charging
