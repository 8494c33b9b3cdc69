"""The connection writer (gateway/connection_state.py) against real PostgreSQL: a storm of
connections and disconnections shares transactions, each charger ends in its last state, every
connection is announced once, and the local-list and site-load triggers fire for the chargers
that came back."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from db.engine import SessionFactory
from db.load_models import SiteLoadLimit
from db.local_list_models import ChargerLocalList
from db.models import Charger, GatewayOutbox, PlatformEvent, Site
from domain.events import CHARGER_CONNECTED
from gateway import journal
from gateway.connection_state import ConnectionStateWriter
from tests.gateway.conftest import seed_charger, uid


async def _rows(sf: SessionFactory, ids: list[str]) -> dict[str, Charger]:
    async with sf() as s:
        found = (await s.scalars(select(Charger).where(Charger.charge_box_id.in_(ids)))).all()
    return {c.charge_box_id: c for c in found}


async def test_a_storm_of_connections_is_written_in_few_transactions_in_order(
    session_factory: SessionFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [await seed_charger(session_factory) for _ in range(60)]
    commits: list[int] = []
    real = journal.write_connection_states

    async def counted(*args: object, **kwargs: object) -> bool:
        commits.append(len(kwargs["events"]) + len(kwargs["disconnected"]))  # type: ignore[arg-type]
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    woken: list[int] = []
    writer = ConnectionStateWriter(session_factory, "gw-storm", lambda: woken.append(1))
    monkeypatch.setattr(journal, "write_connection_states", counted)
    at = datetime.now(UTC)
    # Every charger connects; the first 20 then drop, and the first 10 of those come back — all
    # queued at once, as a storm queues them.
    await asyncio.gather(
        *(writer.connected(i, at, ocpp_version="1.6") for i in ids),
        *(writer.disconnected(i) for i in ids[:20]),
        *(writer.connected(i, at, ocpp_version="2.0.1") for i in ids[:10]),
    )
    await writer.close()

    assert len(commits) < 10, f"one transaction per change: {commits}"
    rows = await _rows(session_factory, ids)
    for i in ids[:10]:
        assert rows[i].connected and rows[i].ocpp_version == "2.0.1"
        assert rows[i].gateway_instance == "gw-storm"
    for i in ids[10:20]:
        assert not rows[i].connected, "its last change was the disconnection"
    for i in ids[20:]:
        assert rows[i].connected and rows[i].ocpp_version == "1.6"
        assert rows[i].last_seen_at is not None
    async with session_factory() as s:
        announced = (
            await s.execute(
                select(PlatformEvent.charge_box_id, func.count())
                .where(
                    PlatformEvent.type == CHARGER_CONNECTED,
                    PlatformEvent.charge_box_id.in_(ids),
                )
                .group_by(PlatformEvent.charge_box_id)
            )
        ).all()
    counts = dict(announced)
    assert all(counts[i] == 2 for i in ids[:10]), "every connection is announced"
    assert all(counts[i] == 1 for i in ids[10:])


async def test_a_disconnection_leaves_a_charger_another_gateway_took(
    session_factory: SessionFactory,
) -> None:
    charge_box_id = await seed_charger(session_factory)
    at = datetime.now(UTC)
    ours = ConnectionStateWriter(session_factory, "gw-a", lambda: None)
    theirs = ConnectionStateWriter(session_factory, "gw-b", lambda: None)
    await ours.connected(charge_box_id, at, ocpp_version="1.6")
    await theirs.connected(charge_box_id, at, ocpp_version="1.6")
    await ours.disconnected(charge_box_id)  # our old socket closes late
    row = (await _rows(session_factory, [charge_box_id]))[charge_box_id]
    assert row.connected and row.gateway_instance == "gw-b"
    await theirs.disconnected(charge_box_id)
    row = (await _rows(session_factory, [charge_box_id]))[charge_box_id]
    assert not row.connected


async def test_chargers_that_come_back_get_their_local_list_and_site_load_rows(
    session_factory: SessionFactory,
) -> None:
    pending, idle, limited = [await seed_charger(session_factory) for _ in range(3)]
    async with session_factory.begin() as s:
        site = Site(name=uid("site-"))
        s.add(site)
        await s.flush()
        s.add(
            SiteLoadLimit(
                site_id=site.id,
                unit="W",
                site_limit=22_000,
                min_per_session=1_400,
                safe_limit=4_000,
            )
        )
        charger = await s.get(Charger, limited)
        assert charger is not None
        charger.site_id = site.id
        s.add(ChargerLocalList(charge_box_id=pending, sync_requested=1))
        s.add(ChargerLocalList(charge_box_id=idle))
    woken: list[int] = []
    writer = ConnectionStateWriter(session_factory, "gw-c", lambda: woken.append(1))
    at = datetime.now(UTC)
    await asyncio.gather(
        *(writer.connected(i, at, ocpp_version="1.6") for i in (pending, idle, limited))
    )
    async with session_factory() as s:
        rows = (
            await s.execute(
                select(GatewayOutbox.workflow_id, GatewayOutbox.kind, GatewayOutbox.payload).where(
                    GatewayOutbox.workflow_id.in_(
                        [f"local-list:{i}" for i in (pending, idle, limited)]
                        + [f"site-load:{site.id}"]
                    )
                )
            )
        ).all()
    by_id = {r.workflow_id: r for r in rows}
    assert set(by_id) == {f"local-list:{pending}", f"site-load:{site.id}"}
    assert by_id[f"local-list:{pending}"].payload == {
        "workflow": {"type": "LocalListSync", "input": {"charge_box_id": pending}},
        "signal": {"reason": "connected"},
    }
    assert by_id[f"site-load:{site.id}"].payload["signal"] == {
        "reason": "connected",
        "charge_box_id": limited,
    }
    assert woken, "the relay is woken for the queued rows"
