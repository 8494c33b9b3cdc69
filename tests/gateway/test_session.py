"""Start → meter → stop: the journal, the outbox, and the relay's ordered delivery."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from ocpp.v16 import call
from sqlalchemy import select
from temporalio.client import Client
from temporalio.service import RPCError

from db.engine import SessionFactory
from db.models import GatewayOutbox, MeterSample, OrphanStop, Transaction
from gateway.main import Gateway
from gateway.outbox import enqueue
from tests.gateway.conftest import charger_session, seed_card, seed_charger
from tests.helpers import eventually, ocpp_ts
from workflows.messages import (
    ConnectorStatus,
    MeterProgress,
    SessionInput,
    TransactionStarted,
    TransactionStopped,
)


def sample(
    value: str, *, unit: str | None = "Wh", context: str | None = None, measurand: str | None = None
) -> dict[str, Any]:
    sv: dict[str, Any] = {"value": value}
    if unit:
        sv["unit"] = unit
    if context:
        sv["context"] = context
    if measurand:
        sv["measurand"] = measurand
    return sv


def minutes_from(base: datetime) -> Callable[[float], str]:
    """OCPP timestamps ``minutes`` after ``base`` (tests keep their times near the gateway's
    clock: it refuses times far from now)."""
    return lambda minutes: ocpp_ts(minutes * 60, base=base)


async def _samples(sf: SessionFactory, tx_id: int) -> list[MeterSample]:
    async with sf() as s:
        return list(
            (
                await s.execute(
                    select(MeterSample)
                    .where(MeterSample.transaction_id == tx_id)
                    .order_by(MeterSample.sampled_at, MeterSample.id)
                )
            ).scalars()
        )


async def test_tap_start_meter_stop_reaches_the_workflow_in_order(
    gateway: Gateway, session_factory: SessionFactory, temporal_client: Client
) -> None:
    cb = await seed_charger(session_factory)
    id_tag = await seed_card(session_factory)
    at = minutes_from(datetime.now(UTC) - timedelta(hours=3))
    async with charger_session(gateway, cb) as cp:
        assert (await cp.call(call.Authorize(id_tag=id_tag))).id_tag_info["status"] == "Accepted"
        start = await cp.call(
            call.StartTransaction(connector_id=1, id_tag=id_tag, meter_start=1000, timestamp=at(0))
        )
        tx_id = start.transaction_id
        assert start.id_tag_info["status"] == "Accepted"
        await cp.call(
            call.MeterValues(
                connector_id=1,
                transaction_id=tx_id,
                meter_value=[
                    {
                        "timestamp": at(0),
                        "sampledValue": [sample("1000", context="Transaction.Begin")],
                    },
                    {
                        "timestamp": at(10),
                        "sampledValue": [
                            sample("1.5", unit="kWh"),
                            sample("16.2", unit="A", measurand="Current.Import"),
                        ],
                    },
                    {
                        "timestamp": at(20),
                        "sampledValue": [sample("2500", unit=None)],
                    },
                ],
            )
        )
        await cp.call(
            call.StatusNotification(connector_id=1, error_code="NoError", status="SuspendedEV")
        )
        stop = await cp.call(
            call.StopTransaction(
                meter_stop=4000,
                timestamp=at(30),
                transaction_id=tx_id,
                id_tag=id_tag,
                reason="Local",
                transaction_data=[
                    {
                        "timestamp": at(30),
                        "sampledValue": [sample("4", unit="kWh", context="Transaction.End")],
                    }
                ],
            )
        )
        assert stop.id_tag_info["status"] == "Accepted"

    async with session_factory() as s:
        tx = await s.get(Transaction, tx_id)
        assert tx is not None
        assert (tx.meter_start_wh, tx.meter_stop_wh, tx.stop_reason) == (1000, 4000, "Local")
        assert tx.workflow_id.startswith(f"session:{cb}:tap:")
    rows = await _samples(session_factory, tx_id)
    energy = [(r.energy_wh, r.flag) for r in rows if r.measurand.startswith("Energy")]
    assert energy == [(1000, None), (1500, None), (2500, None), (4000, None)]
    current = [r for r in rows if r.measurand == "Current.Import"]
    assert current[0].raw_value == "16.2" and current[0].energy_wh is None

    handle = temporal_client.get_workflow_handle(tx.workflow_id)

    async def delivered() -> list[list[object]]:
        events: list[list[object]] = await handle.query("events")
        assert events and events[-1][0] == "transaction_stopped"
        return events

    events = await eventually(delivered, timeout=20)
    kinds = [e[0] for e in events]
    assert kinds[0] == "transaction_started" and kinds[-1] == "transaction_stopped"
    assert "connector_status" in kinds
    # One progress row per batch (the latest register) plus every Transaction.Begin/End sample;
    # a row the relay reaches after a later progress or the stop was queued is superseded (not
    # signalled), so the session hears an increasing subsequence of them.
    async with session_factory() as s:
        outbox = (
            await s.execute(
                select(GatewayOutbox)
                .where(GatewayOutbox.workflow_id == tx.workflow_id)
                .order_by(GatewayOutbox.id)
            )
        ).scalars()
        progress_rows = [r for r in outbox if r.kind == "meter_progress"]
    assert [r.payload["signal"]["energy_register_wh"] for r in progress_rows] == [1000, 2500, 4000]
    assert all(r.delivered_at is not None for r in progress_rows)
    heard = {e[1]: e[2] for e in events if e[0] == "meter_progress"}
    for r in progress_rows:
        if r.id in heard:
            assert heard[r.id] == r.payload["signal"]["energy_register_wh"]
        else:
            assert r.last_error == "superseded by a later row; not signalled"
    event_ids = [e[1] for e in events]
    assert event_ids == sorted(event_ids)  # outbox order per session
    async with session_factory() as s:
        pending = await s.scalar(
            select(GatewayOutbox.id).where(
                GatewayOutbox.workflow_id == tx.workflow_id, GatewayOutbox.delivered_at.is_(None)
            )
        )
    assert pending is None


async def test_queued_progress_is_superseded_by_later_progress_and_the_stop(
    gateway: Gateway, session_factory: SessionFactory, temporal_client: Client
) -> None:
    """A backlog (the rows of an outage, written before the relay reaches them): the session
    hears its start, no stale progress, and its stop; a closure is never skipped."""
    cb = await seed_charger(session_factory)
    workflow_id = f"session:{cb}:backlog"
    start = SessionInput(charge_box_id=cb, connector_id=1, id_tag="BACKLOG", origin="charger")
    now = datetime.now(UTC)

    def progress(wh: int) -> MeterProgress:
        return MeterProgress(event_id=0, transaction_id=1, energy_register_wh=wh, sampled_at=now)

    async with session_factory.begin() as s:
        ids = [
            await enqueue(
                s,
                workflow_id=workflow_id,
                kind=kind,
                start=start,
                signal=signal,
            )
            for kind, signal in [
                (
                    "transaction_started",
                    TransactionStarted(
                        event_id=0,
                        transaction_id=1,
                        charge_box_id=cb,
                        connector_id=1,
                        id_tag="BACKLOG",
                        meter_start_wh=0,
                        started_at=now,
                    ),
                ),
                ("meter_progress", progress(100)),
                ("meter_progress", progress(200)),
                (
                    "connector_status",
                    ConnectorStatus(event_id=0, connector_id=1, status="SuspendedEV", at=now),
                ),
                ("meter_progress", progress(300)),
                (
                    "transaction_stopped",
                    TransactionStopped(
                        event_id=0, transaction_id=1, meter_stop_wh=400, stopped_at=now
                    ),
                ),
            ]
        ]
    gateway.relay.wake()
    handle = temporal_client.get_workflow_handle(workflow_id)

    async def heard() -> list[list[object]]:
        try:
            events: list[list[object]] = await handle.query("events")
        except RPCError as exc:  # not started yet
            raise AssertionError(str(exc)) from exc
        assert events and events[-1][0] == "transaction_stopped"
        return events

    events = await eventually(heard, timeout=20)
    assert events == [
        ["transaction_started", ids[0], 1],
        ["connector_status", ids[3], "SuspendedEV"],
        ["transaction_stopped", ids[5], 400],
    ]
    async with session_factory() as s:
        result = await s.execute(
            select(GatewayOutbox.id, GatewayOutbox.last_error).where(
                GatewayOutbox.workflow_id == workflow_id
            )
        )
        notes = {row_id: note for row_id, note in result}
    superseded = "superseded by a later row; not signalled"
    assert [notes[i] for i in ids] == [None, superseded, superseded, None, superseded, None]
    await handle.signal("finish")


async def test_resends_duplicates_orphans_and_stale_samples(
    gateway: Gateway, session_factory: SessionFactory
) -> None:
    cb = await seed_charger(session_factory)
    id_tag = await seed_card(session_factory)
    at = minutes_from(datetime.now(UTC) - timedelta(days=1))
    begin = call.StartTransaction(connector_id=2, id_tag=id_tag, meter_start=500, timestamp=at(0))
    async with charger_session(gateway, cb) as cp:
        first = await cp.call(begin)
        again = await cp.call(begin)
        assert first.transaction_id == again.transaction_id
        tx_id = first.transaction_id
        stop = call.StopTransaction(
            meter_stop=900,
            timestamp=at(60),
            transaction_id=tx_id,
            reason="PowerLoss",
        )
        await cp.call(stop)
    # The charger reconnects after a power loss and flushes what it had queued.
    async with charger_session(gateway, cb) as cp:
        repeat = await cp.call(
            call.StopTransaction(meter_stop=950, timestamp=at(65), transaction_id=tx_id)
        )
        assert repeat.id_tag_info is None
        await cp.call(
            call.MeterValues(
                connector_id=2,
                transaction_id=tx_id,
                meter_value=[
                    {"timestamp": at(-60), "sampledValue": [sample("400")]},
                    {"timestamp": at(30), "sampledValue": [sample("450")]},
                    {"timestamp": at(40), "sampledValue": [sample("700")]},
                    {"timestamp": at(120), "sampledValue": [sample("990")]},
                ],
            )
        )
        orphan = await cp.call(
            call.StopTransaction(
                meter_stop=1,
                timestamp=at(60),
                transaction_id=-1,
                id_tag="UNKNOWN-TAG",
            )
        )
        assert orphan.id_tag_info["status"] == "Invalid"
        # Back-dated start with a tag nobody knows: still an id, marked Invalid.
        invalid = await cp.call(
            call.StartTransaction(
                connector_id=1,
                id_tag="UNKNOWN-TAG",
                meter_start=0,
                timestamp=ocpp_ts(-20 * 86400),
            )
        )
        assert invalid.transaction_id > 0 and invalid.id_tag_info["status"] == "Invalid"

    async with session_factory() as s:
        tx = await s.get(Transaction, tx_id)
        assert tx is not None and (tx.meter_stop_wh, tx.stop_reason) == (900, "PowerLoss")
        stops = (
            (
                await s.execute(
                    select(GatewayOutbox).where(
                        GatewayOutbox.workflow_id == tx.workflow_id,
                        GatewayOutbox.kind == "transaction_stopped",
                    )
                )
            )
            .scalars()
            .all()
        )
        assert len(stops) == 1
        orphans = (
            (await s.execute(select(OrphanStop).where(OrphanStop.charge_box_id == cb)))
            .scalars()
            .all()
        )
        assert [o.transaction_id for o in orphans] == [-1]
    flags = [(r.energy_wh, r.flag) for r in await _samples(session_factory, tx_id)]
    assert flags == [
        (400, "before_transaction_start"),
        (450, "non_monotonic"),
        (700, None),
        (990, "after_transaction_stop"),
    ]
