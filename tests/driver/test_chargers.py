"""Chargers as drivers see them: availability (offline by silence longer than 3 heartbeat
intervals, seeded rather than waited for), plugs and power set by operators, the tariff in words,
nearest first."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import insert

from config.settings import Settings
from db.engine import SessionFactory
from db.models import Transaction
from db.reservation_models import Reservation
from tests.driver.conftest import seed_site, seed_station, seed_tariff
from tests.fixtures.auth import AuthService
from tests.identity.conftest import person

pytestmark = pytest.mark.timeout(120)


def by_id(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["charge_box_id"]: r for r in rows}


def states(charger: dict[str, Any]) -> list[str]:
    return [c["availability"] for c in charger["connectors"]]


async def test_availability_plugs_power_and_tariff_at_a_site(
    api: httpx.AsyncClient,
    auth_service: AuthService,
    session_factory: SessionFactory,
    identity_settings: Settings,
) -> None:
    driver = await person(auth_service, "sitedriver")
    admin = await person(auth_service, "siteadmin", role="admin")
    silence = timedelta(seconds=identity_settings.heartbeat_interval_s * 3)
    now = datetime.now(UTC)
    site = await seed_site(session_factory, 48.1, 11.5)
    tariff = await seed_tariff(session_factory, per_kwh=30, per_session=50)
    busy = await seed_station(
        session_factory,
        site_id=site,
        statuses=("Available", "Charging", "Faulted", "Reserved", "Available"),
        tariff=tariff,
        max_power_w=22_000,
    )
    async with session_factory.begin() as db:  # a transaction the charger has not reported on
        await db.execute(
            insert(Transaction).values(
                charge_box_id=busy,
                connector_id=5,
                id_tag="TX-OPEN",
                workflow_id=f"session:{busy}:test",
                meter_start_wh=0,
                started_at=now,
            )
        )
    stale = await seed_station(
        session_factory, site_id=site, last_seen_at=now - silence - timedelta(seconds=5)
    )
    recent = await seed_station(
        session_factory, site_id=site, last_seen_at=now - silence + timedelta(seconds=60)
    )
    async with session_factory.begin() as db:  # a driver's reservation holds connector 1 now
        for n, status in ((1, "confirmed"), (2, "cancelled")):
            await db.execute(
                insert(Reservation).values(
                    id=str(uuid.uuid4()),
                    charge_box_id=recent,
                    connector_id=n,
                    user_id="someone-else",
                    id_tag="RES-CARD",
                    starts_at=now - timedelta(minutes=5),
                    ends_at=now + timedelta(minutes=30),
                    status=status,
                    workflow_id=f"reservation:test-{n}",
                )
            )
    gone = await seed_station(session_factory, site_id=site, connected=False)
    out_of_service = await seed_station(session_factory, site_id=site, charger_status="Unavailable")

    patched = await api.patch(
        f"/api/v1/chargers/{busy}",
        json={
            "connectors": [
                {"connector_id": 1, "connector_type": "CCS2", "max_power_w": 150_000},
                {"connector_id": 2, "connector_type": "Type2"},
            ]
        },
        headers=admin.headers,
    )
    assert patched.status_code == 200, patched.text
    wrong = await api.patch(
        f"/api/v1/chargers/{busy}",
        json={"connectors": [{"connector_id": 1, "connector_type": "Type9"}]},
        headers=admin.headers,
    )
    assert wrong.status_code == 422 and wrong.json()["error"] == "VALIDATION_FAILED"
    no_such = await api.patch(
        f"/api/v1/chargers/{busy}",
        json={"connectors": [{"connector_id": 9, "connector_type": "CCS2"}]},
        headers=admin.headers,
    )
    assert no_such.status_code == 422
    # Drivers cannot change chargers.
    refused = await api.patch(
        f"/api/v1/chargers/{busy}", json={"label": "mine"}, headers=driver.headers
    )
    assert refused.status_code == 403

    answer = await api.get(f"/api/v1/sites/{site}/chargers", headers=driver.headers)
    assert answer.status_code == 200, answer.text
    chargers = by_id(answer.json())
    assert set(chargers) == {busy, stale, recent, gone, out_of_service}
    assert states(chargers[busy]) == ["available", "in_use", "faulted", "reserved", "in_use"]
    assert states(chargers[stale]) == ["offline", "offline"]
    # A confirmed reservation holds its connector; a cancelled one holds nothing.
    assert states(chargers[recent]) == ["reserved", "available"]
    assert states(chargers[gone]) == ["offline", "offline"]
    assert states(chargers[out_of_service]) == ["offline", "offline"]
    first, second, third = chargers[busy]["connectors"][:3]
    assert (first["connector_type"], first["max_power_w"]) == ("CCS2", 150_000)
    assert (second["connector_type"], second["max_power_w"]) == ("Type2", 22_000)
    assert (third["connector_type"], third["max_power_w"]) == (None, 22_000)
    price = chargers[busy]["tariff"]
    assert price["words"] == "€0.30 per kWh + €0.50 per session"
    assert (price["code"], price["version"], price["currency"]) == (tariff, 1, "EUR")
    assert (price["price_per_kwh_minor"], price["price_per_session_minor"]) == (30, 50)
    # Public-ish data: nobody's session, card or transaction shows.
    assert "TX-OPEN" not in answer.text and "session:" not in answer.text
    assert "RES-CARD" not in answer.text and "someone-else" not in answer.text

    missing = await api.get("/api/v1/sites/999999999/chargers", headers=driver.headers)
    assert missing.status_code == 404 and missing.json()["error"] == "NOT_FOUND"
    anonymous = await api.get(f"/api/v1/sites/{site}/chargers")
    assert anonymous.status_code == 401


async def test_nearby_is_nearest_first_within_the_radius(
    api: httpx.AsyncClient, auth_service: AuthService, session_factory: SessionFactory
) -> None:
    driver = await person(auth_service, "neardriver")
    # A place of its own, so other tests' sites never come between.
    lat, lon = random.uniform(-50, 50), random.uniform(-170, 170)
    here = await seed_station(session_factory, site_id=await seed_site(session_factory, lat, lon))
    far = await seed_station(
        session_factory, site_id=await seed_site(session_factory, lat + 0.05, lon)
    )  # ~5.6 km
    near = await seed_station(
        session_factory, site_id=await seed_site(session_factory, lat, lon + 0.01)
    )  # < 1.2 km
    outside = await seed_station(
        session_factory, site_id=await seed_site(session_factory, lat + 0.2, lon)
    )  # ~22 km
    await seed_station(session_factory)  # no site: never near anything

    answer = await api.get(
        "/api/v1/chargers/nearby",
        params={"lat": lat, "lon": lon, "radius_km": 10},
        headers=driver.headers,
    )
    assert answer.status_code == 200, answer.text
    mine = [r for r in answer.json() if r["charge_box_id"] in {here, far, near, outside}]
    assert [r["charge_box_id"] for r in mine] == [here, near, far]
    distances = [r["distance_km"] for r in mine]
    assert distances[0] == 0 and 0 < distances[1] < 1.2 and 5 < distances[2] < 6
    assert mine[0]["site"]["latitude"] == pytest.approx(lat)

    wide = await api.get(
        "/api/v1/chargers/nearby",
        params={"lat": lat, "lon": lon, "radius_km": 50},
        headers=driver.headers,
    )
    assert outside in {r["charge_box_id"] for r in wide.json()}
    bad = await api.get(
        "/api/v1/chargers/nearby",
        params={"lat": 91, "lon": lon, "radius_km": 0},
        headers=driver.headers,
    )
    assert bad.status_code == 422
    assert {tuple(i["path"]) for i in bad.json()["issues"]} == {
        ("query", "lat"),
        ("query", "radius_km"),
    }
