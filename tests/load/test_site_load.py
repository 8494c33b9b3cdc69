"""Site load management end to end: arrivals and departures at a site with a limit → the
SiteLoad workflow → the real gateway → real ``ocpp`` 1.6 charge points, whose composite schedule
(asked through the operations service, GetCompositeSchedule) agrees with the plan."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import pytest
from ocpp.v16 import call
from sqlalchemy import select, update

from db.engine import SessionFactory
from db.models import Charger, PlatformEvent, Site
from db.operation_models import ChargerOperation
from services import site_load
from services.actor import Actor
from services.context import ServiceContext
from services.operations import request_operation
from tests.gateway.conftest import seed_card, seed_charger, uid
from tests.helpers import eventually, ocpp_ts
from tests.load.conftest import ProfileCharger, Stack, charge_point
from workflows.site_load_messages import QUERY_SITE_LOAD_STATUS, SiteLoadStatus

pytestmark = pytest.mark.timeout(240)

HISTORY = Path(__file__).resolve().parent.parent / "histories" / "site_load_v1.json"
ADMIN = Actor(id="user:test-admin", role="admin", source="203.0.113.9")


async def seed_site(sf: SessionFactory, chargers: dict[str, int]) -> int:
    """A site holding the given chargers (charge box id → max power in W)."""
    async with sf.begin() as db:
        site = Site(name=uid("site-"))
        db.add(site)
        await db.flush()
        for cb, max_power_w in chargers.items():
            await db.execute(
                update(Charger)
                .where(Charger.charge_box_id == cb)
                .values(site_id=site.id, max_power_w=max_power_w)
            )
        return site.id


async def planned(ctx: ServiceContext, site_id: int, expected: dict[str, int]) -> None:
    """The plan gives each session (by charge box id) its expected limit, and every charger
    acknowledged it."""

    async def reached() -> bool:
        view = await site_load.site_load(ctx, site_id)
        got = {s.charge_box_id: (s.limit, s.acknowledged_limit) for s in view.sessions}
        assert got == {cb: (w, w) for cb, w in expected.items()}, got
        assert view.limit is not None and view.allocated <= view.limit.site_limit
        return True

    await eventually(reached, timeout=60, message=f"plan {expected}")


async def composites(
    ctx: ServiceContext,
    cps: dict[str, ProfileCharger],
    expected: dict[str, int],
    limit: int,
    unit: str = "W",
) -> None:
    """GetCompositeSchedule from each charger with a session agrees with the plan; the sum is
    within the site's limit."""
    total = 0
    for cb, watts in expected.items():
        op = await request_operation(
            ctx,
            ADMIN,
            cb,
            "GetCompositeSchedule",
            {"connectorId": 1, "duration": 60, "chargingRateUnit": unit},
        )
        assert op["status"] == "answered", op
        schedule = op["response"]["chargingSchedule"]
        assert schedule["chargingRateUnit"] == unit
        got = int(schedule["chargingSchedulePeriod"][0]["limit"])
        assert got == watts, (cb, got, watts)
        assert cps[cb].limit_of(1) == (watts, unit)
        total += got
    assert total <= limit


def profile_sets(cps: dict[str, ProfileCharger]) -> dict[str, int]:
    return {cb: sum(1 for r in cp.received if r[0] == "Set") for cb, cp in cps.items()}


async def status(stack: Stack, site_id: int) -> SiteLoadStatus:
    handle = stack.client.get_workflow_handle(f"site-load:{site_id}")
    result: SiteLoadStatus = await handle.query(QUERY_SITE_LOAD_STATUS, result_type=SiteLoadStatus)
    return result


async def test_arrivals_and_departures_share_the_site_limit(
    stack: Stack, ctx: ServiceContext, session_factory: SessionFactory
) -> None:
    small = await seed_charger(session_factory)
    a, b, c = [await seed_charger(session_factory) for _ in range(3)]
    site_id = await seed_site(session_factory, {a: 22_000, b: 22_000, c: 11_000, small: 3_700})
    view = await site_load.set_load_limit(ctx, ADMIN, site_id, site_load.LoadLimitInput(kw=30))
    assert view.limit is not None and view.limit.site_limit == 30_000
    assert view.limit.min_per_session == 4_140 and view.limit.safe_limit == 4_140
    tags = {cb: await seed_card(session_factory, prefix="LD") for cb in (a, b, c, small)}
    async with (
        charge_point(stack.gateway, a) as cp_a,
        charge_point(stack.gateway, b) as cp_b,
        charge_point(stack.gateway, c) as cp_c,
        charge_point(stack.gateway, small) as cp_small,
    ):
        cps = {a: cp_a, b: cp_b, c: cp_c, small: cp_small}

        # Connected chargers get the safe default (TxDefaultProfile, connector 0), capped by
        # their own maximum.
        async def defaults() -> bool:
            for cb, cp in cps.items():
                assert cp.limit_of(1) == (3_700 if cb == small else 4_140, "W"), cb
            return True

        await eventually(defaults, timeout=60, message="default profiles")

        steps: list[tuple[str, str, dict[str, int]]] = [
            ("start", a, {a: 22_000}),
            ("start", b, {a: 15_000, b: 15_000}),
            ("start", c, {a: 10_000, b: 10_000, c: 10_000}),
            # The small charger takes what it can; the others share the rest (oldest gets the
            # odd watt).
            ("start", small, {a: 8_767, b: 8_767, c: 8_766, small: 3_700}),
            ("stop", a, {b: 15_300, c: 11_000, small: 3_700}),
        ]
        for what, cb, expected in steps:
            if what == "start":
                await cps[cb].start_charging(1, tags[cb])
            else:
                await cps[cb].stop_charging(1)
            await planned(ctx, site_id, expected)
            await composites(ctx, cps, expected, 30_000)

        # A lower limit: minimums first, oldest first; the newest (small) is paused.
        await site_load.set_load_limit(ctx, ADMIN, site_id, site_load.LoadLimitInput(kw=10))
        expected = {b: 5_000, c: 5_000, small: 0}
        await planned(ctx, site_id, expected)
        await composites(ctx, cps, expected, 10_000)
        view = await site_load.site_load(ctx, site_id)
        assert [s.paused for s in view.sessions] == [False, False, True]

        # A worker restart re-sends nothing the chargers acknowledged.
        sent = profile_sets(cps)
        before = await status(stack, site_id)
        await stack.restart_worker()
        assert await site_load.wake(ctx, site_id, "forced")

        async def another_round() -> SiteLoadStatus:
            now = await status(stack, site_id)
            assert now.rounds > before.rounds, now
            return now

        after = await eventually(another_round, timeout=60, message="a round after restart")
        assert after.sent == before.sent and after.last_outcome == "in_step"
        assert profile_sets(cps) == sent
        await composites(ctx, cps, expected, 10_000)

        # A departure resumes the paused session.
        await cps[b].stop_charging(1)
        await planned(ctx, site_id, {c: 6_300, small: 3_700})
        await composites(ctx, cps, {c: 6_300, small: 3_700}, 10_000)

    async with session_factory() as db:
        events = (
            await db.scalars(
                select(PlatformEvent)
                .where(PlatformEvent.type == "site.load_changed", PlatformEvent.site_id == site_id)
                .order_by(PlatformEvent.id)
            )
        ).all()
    assert events, "no site.load_changed event"
    last: dict[str, Any] = events[-1].payload
    assert last["site_limit"] == 10_000 and last["allocated"] == 10_000
    assert {x["charge_box_id"]: x["limit"] for x in last["allocations"]} == {
        c: 6_300,
        small: 3_700,
    }


async def test_offered_limits_offline_chargers_and_reboots_in_amps(
    stack: Stack, ctx: ServiceContext, session_factory: SessionFactory
) -> None:
    """With ``POLARIS_RECORD_HISTORIES=1`` it also records ``tests/histories/site_load_v1.json``
    (replayed by ``tests/workflows/test_replay.py``)."""
    x, y = [await seed_charger(session_factory) for _ in range(2)]
    site_id = await seed_site(session_factory, {x: 22_080, y: 22_080})  # 32 A on 3 × 230 V
    await site_load.set_load_limit(
        ctx, ADMIN, site_id, site_load.LoadLimitInput(amps=32, phases=3, voltage=230)
    )
    tag_x, tag_y = [await seed_card(session_factory, prefix="LA") for _ in range(2)]
    async with contextlib.AsyncExitStack() as y_connection, charge_point(stack.gateway, x) as cp_x:
        cp_y = await y_connection.enter_async_context(charge_point(stack.gateway, y))
        cps = {x: cp_x, y: cp_y}
        await eventually(
            lambda: cp_x.limit_of(1) == (6, "A") and cp_y.limit_of(1) == (6, "A"),
            timeout=60,
            message="default profiles",
        )
        await cp_y.start_charging(1, tag_y)
        await planned(ctx, site_id, {y: 32})
        tx_x = await cp_x.start_charging(1, tag_x)
        await planned(ctx, site_id, {y: 16, x: 16})
        await composites(ctx, cps, {y: 16, x: 16}, 32, "A")

        # x offers its EV only 10 A: y gets the rest.
        await cp_x.call(
            call.MeterValues(
                connector_id=1,
                transaction_id=tx_x,
                meter_value=[
                    {
                        "timestamp": ocpp_ts(),
                        "sampled_value": [
                            {"value": "10", "measurand": "Current.Offered", "unit": "A"}
                        ],
                    }
                ],
            )
        )
        await planned(ctx, site_id, {y: 22, x: 10})
        await composites(ctx, cps, {y: 22, x: 10}, 32, "A")

        # y drops off the network: its session keeps the 22 A it has, so when x starts
        # again it gets only what is left.
        await y_connection.aclose()
        await cp_x.stop_charging(1)
        await cp_x.start_charging(1, tag_x)
        await planned(ctx, site_id, {y: 22, x: 10})
        await composites(ctx, {x: cp_x}, {x: 10}, 32, "A")
        view = await site_load.site_load(ctx, site_id)
        assert {s.charge_box_id: s.connected for s in view.sessions} == {y: False, x: True}

        # y comes back (it reboots, its transaction still running): the safe default is sent
        # again, and both share the limit.
        tx_y = next(s.transaction_id for s in view.sessions if s.charge_box_id == y)
        async with charge_point(stack.gateway, y, transactions={1: tx_y}) as cp_y2:
            await eventually(
                lambda: (0, "TxDefaultProfile") in cp_y2.profiles,
                timeout=60,
                message="the default after the reboot",
            )
            await planned(ctx, site_id, {y: 16, x: 16})
            await composites(ctx, {x: cp_x, y: cp_y2}, {y: 16, x: 16}, 32, "A")
    if os.environ.get("POLARIS_RECORD_HISTORIES"):
        handle = stack.client.get_workflow_handle(f"site-load:{site_id}")
        HISTORY.write_text((await handle.fetch_history()).to_json())


async def test_a_rejected_profile_is_sent_again(
    stack: Stack, ctx: ServiceContext, session_factory: SessionFactory
) -> None:
    cb = await seed_charger(session_factory)
    site_id = await seed_site(session_factory, {cb: 11_000})
    await site_load.set_load_limit(ctx, ADMIN, site_id, site_load.LoadLimitInput(kw=7))
    async with charge_point(stack.gateway, cb, refuse_tx_profiles=1) as cp:
        await cp.start_charging(1, await seed_card(session_factory, prefix="LR"))
        # Refused once (recorded as rejected, in the operations log too), then accepted.
        await planned(ctx, site_id, {cb: 7_000})
        await composites(ctx, {cb: cp}, {cb: 7_000}, 7_000)
        tx_sets = [r for r in cp.received if r[2]["charging_profile_purpose"] == "TxProfile"]
        assert len(tx_sets) >= 2
    async with session_factory() as db:
        statuses = (
            await db.scalars(
                select(ChargerOperation.status)
                .where(
                    ChargerOperation.charge_box_id == cb,
                    ChargerOperation.action == "SetChargingProfile",
                )
                .order_by(ChargerOperation.created_at)
            )
        ).all()
    assert "rejected" in statuses and statuses.count("answered") >= 2, statuses
