"""KPIs over real PostgreSQL: energy split at the operator's midnight from meter samples, in two
time zones, and the counts. Each test works inside a transaction that is rolled back; figures are
compared before and after seeding, so rows other tests committed do not matter."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Charger, ChargingSession, Connector, MeterSample, Transaction
from services.kpis import compute_kpis, day_bounds, failed_operations, month_bounds

BERLIN = ZoneInfo("Europe/Berlin")
# 11:00 in Berlin on 15 January 2030 (UTC+1); Berlin's midnight is 23:00 UTC the day before.
NOW = datetime(2030, 1, 15, 10, 0, tzinfo=UTC)
REGISTER = "Energy.Active.Import.Register"


def utc(day: int, hour: int, minute: int = 0, month: int = 1, year: int = 2030) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


class Seeder:
    def __init__(self, db: AsyncSession) -> None:
        self.db = db
        self.suffix = uuid.uuid4().hex[:8]
        self.tx = 0

    async def charger(self, name: str, *, connected: bool = True) -> str:
        cb = f"KPI-{name}-{self.suffix}"
        self.db.add(Charger(charge_box_id=cb, connected=connected))
        await self.db.flush()
        return cb

    async def transaction(
        self,
        cb: str,
        start: datetime,
        start_wh: int,
        samples: list[tuple[datetime, int, str | None]],
        stop: tuple[datetime, int] | None = None,
    ) -> int:
        self.tx += 1
        row = Transaction(
            charge_box_id=cb,
            connector_id=self.tx,
            id_tag="KPI",
            workflow_id=f"kpi:{self.suffix}:{self.tx}",
            meter_start_wh=start_wh,
            started_at=start,
            stopped_at=stop[0] if stop else None,
            meter_stop_wh=stop[1] if stop else None,
        )
        self.db.add(row)
        await self.db.flush()
        for at, wh, flag in samples:
            self.db.add(
                MeterSample(
                    transaction_id=row.id,
                    charge_box_id=cb,
                    connector_id=self.tx,
                    sampled_at=at,
                    measurand=REGISTER,
                    unit="Wh",
                    raw_value=str(wh),
                    energy_wh=wh,
                    flag=flag,
                )
            )
        # A per-phase reading and another measurand never count as the meter.
        self.db.add(
            MeterSample(
                transaction_id=row.id,
                charge_box_id=cb,
                connector_id=self.tx,
                sampled_at=start + timedelta(minutes=1),
                measurand=REGISTER,
                phase="L1",
                raw_value="999999",
                energy_wh=999_999,
            )
        )
        await self.db.flush()
        return row.id


async def seed_energy(db: AsyncSession) -> None:
    s = Seeder(db)
    cb = await s.charger("energy")
    # Across Berlin's midnight (23:00 UTC): 1000 Wh before it, 1500 Wh after; all on the 14th
    # in UTC.
    await s.transaction(
        cb,
        utc(14, 22),
        1000,
        [
            (utc(14, 22, 30), 1500, None),
            (utc(14, 22, 55), 2000, None),
            (utc(14, 23, 10), 0, "not_monotonic"),
        ],
        stop=(utc(14, 23, 45), 3500),
    )
    # Today in both zones, no samples: counted whole at its stop.
    await s.transaction(cb, utc(15, 8), 0, [], stop=(utc(15, 9), 7000))
    # Still charging: 500 Wh so far; the flagged sample (not monotonic) is never counted.
    await s.transaction(
        cb,
        utc(15, 9, 30),
        100,
        [(utc(15, 9, 45), 600, None), (utc(15, 9, 50), 99_999, "not_monotonic")],
    )
    # New Year's Eve in UTC, New Year's Day in Berlin: this month only in Berlin.
    await s.transaction(
        cb,
        utc(31, 23, 30, month=12, year=2029),
        0,
        [],
        stop=(utc(31, 23, 50, month=12, year=2029), 800),
    )


async def test_energy_is_split_at_the_operators_midnight(db_session: AsyncSession) -> None:
    before = {
        z: await compute_kpis(db_session, now=NOW, zone=ZoneInfo(z))
        for z in ("UTC", "Europe/Berlin")
    }
    await seed_energy(db_session)
    after = {
        z: await compute_kpis(db_session, now=NOW, zone=ZoneInfo(z))
        for z in ("UTC", "Europe/Berlin")
    }

    def delta(zone: str, key: str) -> Any:
        return after[zone][key] - before[zone][key]

    assert delta("Europe/Berlin", "energy_today_wh") == 1500 + 7000 + 500
    assert delta("Europe/Berlin", "energy_month_wh") == 2500 + 7000 + 500 + 800
    assert delta("UTC", "energy_today_wh") == 7000 + 500
    assert delta("UTC", "energy_month_wh") == 2500 + 7000 + 500
    berlin = after["Europe/Berlin"]
    assert berlin["timezone"] == "Europe/Berlin"
    assert berlin["today_from"] == "2030-01-15T00:00:00+01:00"
    assert berlin["month_from"] == "2030-01-01T00:00:00+01:00"
    assert berlin["energy_today_kwh"] == round(berlin["energy_today_wh"] / 1000, 3)


async def test_yesterday_in_berlin_gets_the_hour_before_midnight(db_session: AsyncSession) -> None:
    yesterday = NOW - timedelta(days=1)
    before = await compute_kpis(db_session, now=yesterday, zone=BERLIN)
    await seed_energy(db_session)
    after = await compute_kpis(db_session, now=yesterday, zone=BERLIN)
    assert after["energy_today_wh"] - before["energy_today_wh"] == 1000


async def test_counts_sessions_chargers_and_faults(db_session: AsyncSession) -> None:
    before = await compute_kpis(db_session, now=NOW, zone=BERLIN)
    s = Seeder(db_session)
    online = await s.charger("on")
    await s.charger("on2")
    offline = await s.charger("off", connected=False)
    db_session.add_all(
        [
            Connector(
                charge_box_id=online, connector_id=1, status="Faulted", error_code="GroundFailure"
            ),
            Connector(
                charge_box_id=online,
                connector_id=2,
                status="Available",
                error_code="HighTemperature",
            ),
            Connector(
                charge_box_id=offline, connector_id=1, status="Available", error_code="NoError"
            ),
            ChargingSession(
                workflow_id=f"kpi-a-{s.suffix}", state="charging", charge_box_id=online
            ),
            ChargingSession(
                workflow_id=f"kpi-b-{s.suffix}", state="suspended", charge_box_id=online
            ),
            ChargingSession(workflow_id=f"kpi-c-{s.suffix}", state="closed", charge_box_id=online),
            ChargingSession(
                workflow_id=f"kpi-d-{s.suffix}", state="pre_authorized", charge_box_id=online
            ),
        ]
    )
    await db_session.flush()
    after = await compute_kpis(db_session, now=NOW, zone=BERLIN)
    assert after["chargers_online"] - before["chargers_online"] == 2
    assert after["chargers_offline"] - before["chargers_offline"] == 1
    assert after["active_sessions"] - before["active_sessions"] == 2
    assert after["faulted_connectors"] - before["faulted_connectors"] == 2
    mine = [f for f in after["faults"] if f["charge_box_id"] == online]
    assert [(f["connector_id"], f["status"], f["error_code"]) for f in mine] == [
        (1, "Faulted", "GroundFailure"),
        (2, "Available", "HighTemperature"),
    ]


async def test_failed_operations_from_the_operations_log(db_session: AsyncSession) -> None:
    """None while the operations log does not exist; counted from it once it does."""
    exists = await db_session.scalar(text("SELECT to_regclass('charger_operations') IS NOT NULL"))
    if not exists:
        assert await failed_operations(db_session, NOW - timedelta(hours=24)) is None
        # The agreed columns (the operations capability's migration makes the real table).
        await db_session.execute(
            text(
                "CREATE TABLE charger_operations (id text PRIMARY KEY, charge_box_id text, "
                "action text, request jsonb, status text, response jsonb, error text, "
                "requested_by text, source text, created_at timestamptz, sent_at timestamptz, "
                "finished_at timestamptz)"
            )
        )
    before = await failed_operations(db_session, NOW - timedelta(hours=24))
    assert before is not None
    rows = [
        ("failed", NOW - timedelta(hours=1)),
        ("timed_out", NOW - timedelta(hours=23)),
        ("charger_offline", NOW - timedelta(minutes=5)),
        ("rejected", NOW - timedelta(hours=2)),
        ("answered", NOW - timedelta(hours=1)),
        ("failed", NOW - timedelta(hours=25)),
    ]
    for status, at in rows:
        await db_session.execute(
            text(
                "INSERT INTO charger_operations (id, charge_box_id, action, request, status, "
                "requested_by, source, created_at) VALUES (:id, 'KPI-OPS', 'Reset', '{}', "
                ":status, 'test', 'test', :at)"
            ),
            {"id": str(uuid.uuid4()), "status": status, "at": at},
        )
    assert await failed_operations(db_session, NOW - timedelta(hours=24)) == before + 4


def test_periods_follow_daylight_saving_time() -> None:
    # 31 March 2030: Berlin moves to summer time, the day has 23 hours.
    start, end = day_bounds(datetime(2030, 3, 31, 12, tzinfo=UTC), BERLIN)
    assert (start, end) == (utc(30, 23, month=3), utc(31, 22, month=3))
    start, end = month_bounds(datetime(2030, 3, 31, 23, tzinfo=UTC), BERLIN)  # 1 April in Berlin
    assert (start, end) == (utc(31, 22, month=3), utc(30, 22, month=4))
    start, end = month_bounds(datetime(2030, 12, 31, 23, 30, tzinfo=UTC), BERLIN)
    assert (start, end) == (utc(31, 23, month=12), utc(31, 23, month=1, year=2031))
