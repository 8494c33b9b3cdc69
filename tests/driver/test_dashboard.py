"""The dashboard's usage days are the driver's: the same session counts on another day (and in
another year) in another time zone; every day of the period is there."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from db.engine import SessionFactory
from db.models import ChargingSession
from tests.fixtures.auth import AuthService
from tests.identity.conftest import person

pytestmark = pytest.mark.timeout(120)


async def test_usage_days_follow_the_drivers_time_zone(
    api: httpx.AsyncClient, auth_service: AuthService, session_factory: SessionFactory
) -> None:
    driver = await person(auth_service, "usage")
    today = datetime.now(UTC).date()
    year = datetime.now(ZoneInfo("Europe/Berlin")).year
    # 00:30 on 1 January in Berlin is still the old year in UTC.
    new_year = datetime(year, 1, 1, 0, 30, tzinfo=UTC) - timedelta(hours=1)
    last_month = (today.replace(day=1) - timedelta(days=1)).replace(day=15)
    mid_last_month = datetime.combine(last_month, datetime.min.time(), UTC) + timedelta(hours=12)
    async with session_factory.begin() as db:
        for started, energy, cost in ((new_year, 7000, 210), (mid_last_month, 3000, 90)):
            db.add(
                ChargingSession(
                    workflow_id=f"session:test:{uuid.uuid4().hex}",
                    state="billed",
                    charge_box_id="CB-USAGE",
                    user_id=driver.user_id,
                    energy_wh=energy,
                    cost_minor=cost,
                    currency="EUR",
                    started_at=started,
                    stopped_at=started + timedelta(minutes=30),
                )
            )

    async def usage(**params: str) -> dict[str, Any]:
        answer = await api.get("/api/v1/me/dashboard", params=params, headers=driver.headers)
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()["usage"]
        return result

    berlin = await usage(period="year", tz="Europe/Berlin")
    days = berlin["days"]
    assert days[0]["date"] == f"{year}-01-01"
    assert days[-1]["date"] == berlin["to"]
    assert len(days) == (date.fromisoformat(berlin["to"]) - date(year, 1, 1)).days + 1
    counted = {d["date"]: d["energy_wh"] for d in days if d["sessions"]}
    assert counted[f"{year}-01-01"] == 7000
    utc = await usage(period="year", tz="UTC")
    assert f"{year}-01-01" not in {d["date"] for d in utc["days"] if d["sessions"]}

    previous = await usage(period="previous", tz="UTC")
    assert previous["from"] == last_month.replace(day=1).isoformat()
    costs = {d["date"]: d["cost_minor"] for d in previous["days"] if d["sessions"]}
    assert costs[last_month.isoformat()] == {"EUR": 90}
    # The driver's own only.
    other = await person(auth_service, "usageother")
    theirs = await api.get("/api/v1/me/dashboard", params={"period": "year"}, headers=other.headers)
    assert theirs.json()["usage"]["totals"]["sessions"] == 0
    assert theirs.json()["last_sessions"] == []
    wrong = await api.get(
        "/api/v1/me/dashboard", params={"tz": "Mars/Olympus"}, headers=driver.headers
    )
    assert wrong.status_code == 422 and wrong.json()["issues"][0]["path"] == ["tz"]
    bad_period = await api.get(
        "/api/v1/me/dashboard", params={"period": "decade"}, headers=driver.headers
    )
    assert bad_period.status_code == 422
