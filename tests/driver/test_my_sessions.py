"""A driver charges from the phone over the real stack: one session for two concurrent starts
with the same client request id, the figures of its detail from known meter samples, the
dashboard, stopping (their own only, twice is fine), and impersonation reading but never writing.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from ocpp.v16 import call
from sqlalchemy import select

from db.engine import SessionFactory
from db.models import ChargingSession
from gateway.main import Gateway
from tests.driver.conftest import plugged_in, seed_station, seed_tariff
from tests.fixtures.auth import AuthService
from tests.helpers import eventually
from tests.identity.conftest import Person, person, seed_card

pytestmark = pytest.mark.timeout(240)


async def _row(sf: SessionFactory, workflow_id: str) -> ChargingSession:
    async with sf() as db:
        row = await db.scalar(
            select(ChargingSession).where(ChargingSession.workflow_id == workflow_id)
        )
    assert row is not None
    return row


async def _impersonating(api: httpx.AsyncClient, admin: Person, driver: Person) -> dict[str, str]:
    started = await api.post(
        "/api/v1/impersonation", json={"user_id": driver.user_id}, headers=admin.headers
    )
    assert started.status_code == 201, started.text
    return {"Authorization": f"Bearer {started.json()['jwt']}"}


async def test_charge_from_the_phone(
    api: httpx.AsyncClient,
    gateway: Gateway,
    auth_service: AuthService,
    session_factory: SessionFactory,
) -> None:
    sf = session_factory
    driver = await person(auth_service, "phone")
    other = await person(auth_service, "otherphone")
    admin = await person(auth_service, "support", role="admin")
    await seed_card(sf, owner=driver)
    newest = await seed_card(sf, owner=driver)  # the most recently linked card is used
    tariff = await seed_tariff(sf, per_kwh=30, per_session=50)
    cb = await seed_station(sf, connected=False, tariff=tariff)
    body: dict[str, Any] = {
        "charge_box_id": cb,
        "connector_id": 1,
        "client_request_id": str(uuid.uuid4()),
    }
    async with plugged_in(gateway, cb) as cp:
        # Two taps on "Start" at once: one session, one RemoteStartTransaction.
        first, second = await asyncio.gather(
            api.post("/api/v1/me/sessions", json=body, headers=driver.headers),
            api.post("/api/v1/me/sessions", json=body, headers=driver.headers),
        )
        assert first.status_code == second.status_code == 200, (first.text, second.text)
        workflow_id = first.json()["workflow_id"]
        assert second.json()["workflow_id"] == workflow_id
        assert first.json()["remote_start"] == second.json()["remote_start"] == "Accepted"
        assert cp.remote_starts == [{"id_tag": newest, "connector_id": 1}]

        # The charger starts; meter values with a power sample, then a register alone.
        t0 = datetime.now(UTC) - timedelta(minutes=10)
        start = await cp.call(
            call.StartTransaction(
                connector_id=1, id_tag=newest, meter_start=1000, timestamp=t0.isoformat()
            )
        )
        tx = start.transaction_id
        await cp.call(
            call.MeterValues(
                connector_id=1,
                transaction_id=tx,
                meter_value=[
                    {
                        "timestamp": (t0 + timedelta(minutes=5)).isoformat(),
                        "sampledValue": [
                            {"value": "2.0", "unit": "kWh"},
                            {"value": "11000", "unit": "W", "measurand": "Power.Active.Import"},
                        ],
                    },
                    {
                        "timestamp": (t0 + timedelta(minutes=10)).isoformat(),
                        "sampledValue": [{"value": "3500", "unit": "Wh"}],
                    },
                ],
            )
        )

        async def charging() -> ChargingSession:
            row = await _row(sf, workflow_id)
            assert row.state == "charging", row.state
            return row

        await eventually(charging, timeout=60)

        # Same request again later: the same session (the connector is busy by now).
        again = await api.post("/api/v1/me/sessions", json=body, headers=driver.headers)
        assert again.status_code == 200 and again.json()["workflow_id"] == workflow_id
        assert again.json()["replayed"] is True and len(cp.remote_starts) == 1
        # Someone else's identical request id is their own request, not this session.
        theirs = await api.post("/api/v1/me/sessions", json=body, headers=other.headers)
        assert theirs.status_code == 409 and theirs.json()["error"] == "NO_CARD"

        detail = await api.get(f"/api/v1/me/sessions/{workflow_id}", headers=driver.headers)
        assert detail.status_code == 200, detail.text
        d = detail.json()
        assert (d["state"], d["energy_wh"], d["transaction_id"]) == ("charging", 2500, tx)
        points = [(p["energy_wh"], p["power_w"], p["power_kw"]) for p in d["timeline"]]
        # 11 kW measured at 5 min; 1500 Wh in the next 5 min is 18 kW.
        assert points == [(0, None, None), (1000, 11000, 11.0), (2500, 18000, 18.0)]
        assert d["peak_power_w"] == 18000
        assert d["duration_s"] >= 600
        assert d["average_power_w"] == round(2500 * 3600 / d["duration_s"])
        assert d["tariff"]["words"] == "€0.30 per kWh + €0.50 per session"
        # 2.5 kWh × €0.30 + €0.50 (no time price, so the estimate does not move with the clock).
        assert d["estimated_cost"] == {
            "currency": "EUR",
            "energy_minor": 75,
            "time_minor": 0,
            "session_minor": 50,
            "total_minor": 125,
        }
        meter = await api.get(f"/api/v1/me/sessions/{workflow_id}/meter", headers=driver.headers)
        assert meter.status_code == 200
        assert [p["energy_wh"] for p in meter.json()["points"]] == [0, 1000, 2500]

        # The month the session started in (UTC days),
        # so a run just after midnight on the 1st still finds it.
        month = {
            "period": "current" if t0.month == datetime.now(UTC).month else "previous",
            "tz": "UTC",
        }
        board = await api.get("/api/v1/me/dashboard", params=month, headers=driver.headers)
        assert board.status_code == 200, board.text
        b = board.json()
        assert b["active_session"]["workflow_id"] == workflow_id
        assert b["active_session"]["estimated_cost"]["total_minor"] == 125
        assert [s["workflow_id"] for s in b["last_sessions"]] == [workflow_id]
        assert b["next_reservation"] is None
        assert b["usage"]["totals"]["sessions"] == 1
        assert [day["date"] for day in b["usage"]["days"] if day["sessions"]] == [
            t0.date().isoformat()
        ]

        # Other people's sessions are not found, whatever the route.
        for method, path in (
            ("GET", f"/api/v1/me/sessions/{workflow_id}"),
            ("GET", f"/api/v1/me/sessions/{workflow_id}/meter"),
            ("POST", f"/api/v1/me/sessions/{workflow_id}/stop"),
        ):
            answer = await api.request(method, path, headers=other.headers)
            assert answer.status_code == 404, (path, answer.text)
            assert answer.json()["error"] == "NOT_FOUND"
        assert (await api.get("/api/v1/me/dashboard", headers=other.headers)).json()[
            "active_session"
        ] is None

        # Impersonation reads, never writes.
        support = await _impersonating(api, admin, driver)
        seen = await api.get("/api/v1/me/dashboard", headers=support)
        assert seen.status_code == 200
        assert seen.json()["active_session"]["workflow_id"] == workflow_id
        for path, payload in (
            ("/api/v1/me/sessions", {**body, "client_request_id": str(uuid.uuid4())}),
            (f"/api/v1/me/sessions/{workflow_id}/stop", None),
        ):
            answer = await api.post(path, json=payload, headers=support)
            assert answer.status_code == 403, answer.text
            assert answer.json()["error"] == "IMPERSONATION_READ_ONLY"
        assert cp.remote_stops == []

        # Stop: once through the charger; a second stop answers the same, no second command.
        stop_url = f"/api/v1/me/sessions/{workflow_id}/stop"
        stopped = await api.post(stop_url, headers=driver.headers)
        assert stopped.status_code == 200, stopped.text
        assert stopped.json()["accepted"] is True
        assert cp.remote_stops == [tx]
        twice = await api.post(stop_url, headers=driver.headers)
        assert twice.status_code == 200 and twice.json()["accepted"] is True
        assert cp.remote_stops == [tx]
        await cp.call(
            call.StopTransaction(
                meter_stop=3500,
                timestamp=(t0 + timedelta(minutes=11)).isoformat(),
                transaction_id=tx,
                id_tag=newest,
                reason="Remote",
            )
        )

        async def over() -> ChargingSession:
            row = await _row(sf, workflow_id)
            assert row.state in ("billed", "closed"), row.state
            return row

        await eventually(over, timeout=60)
        after = await api.post(stop_url, headers=driver.headers)
        assert after.status_code == 200 and after.json()["accepted"] is True
        board = await api.get("/api/v1/me/dashboard", params=month, headers=driver.headers)
        usage = board.json()["usage"]
        assert (usage["totals"]["sessions"], usage["totals"]["energy_wh"]) == (1, 2500)
        assert usage["totals"]["cost_minor"] == {"EUR": 125}
        final = (await api.get(f"/api/v1/me/sessions/{workflow_id}", headers=driver.headers)).json()
        assert final["duration_s"] == 660
        assert final["average_power_w"] == round(2500 * 3600 / 660)
        assert final["estimated_cost"]["total_minor"] == 125
