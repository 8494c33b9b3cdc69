"""Every refusal of ``POST /api/v1/me/sessions`` has its own code, and is answered before any
workflow starts (except the charger's own refusal, which only the charger can give)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from config.settings import Settings
from db.engine import SessionFactory
from db.models import EvCard
from gateway.main import Gateway
from services.driver_sessions import driver_workflow_id
from tests.driver.conftest import plugged_in, seed_station
from tests.fixtures.auth import AuthService
from tests.identity.conftest import Person, person, seed_card

pytestmark = pytest.mark.timeout(180)


def start_body(cb: str, connector: int = 1, request_id: str | None = None) -> dict[str, Any]:
    return {
        "charge_box_id": cb,
        "connector_id": connector,
        "client_request_id": request_id or uuid.uuid4().hex,
    }


async def refused(
    api: httpx.AsyncClient, who: Person, body: dict[str, Any], status: int, code: str
) -> None:
    answer = await api.post("/api/v1/me/sessions", json=body, headers=who.headers)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"] == code, answer.text
    assert answer.json()["message"]


async def card_with(sf: SessionFactory, owner: Person, **state: Any) -> str:
    tag = await seed_card(sf, owner=owner)
    async with sf.begin() as db:
        await db.execute(update(EvCard).where(EvCard.id_tag == tag).values(**state))
    return tag


async def test_each_refusal_has_its_code(
    api: httpx.AsyncClient,
    auth_service: AuthService,
    session_factory: SessionFactory,
    identity_settings: Settings,
    temporal_client: Client,
) -> None:
    sf = session_factory
    free = await seed_station(sf)
    driver = await person(auth_service, "nocard")
    nothing = start_body(free)
    await refused(api, driver, nothing, 409, "NO_CARD")

    blocked = await person(auth_service, "blocked")
    await card_with(sf, blocked, blocked=True)
    await refused(api, blocked, start_body(free), 403, "CARD_BLOCKED")

    lost = await person(auth_service, "lost")
    await card_with(sf, lost, lost_at=datetime.now(UTC), is_active=False)
    await refused(api, lost, start_body(free), 403, "CARD_LOST")

    expired = await person(auth_service, "expired")
    await card_with(sf, expired, expires_at=datetime.now(UTC) - timedelta(days=1))
    await refused(api, expired, start_body(free), 403, "CARD_EXPIRED")

    ok = await person(auth_service, "okcard")
    await seed_card(sf, owner=ok)
    silence = timedelta(seconds=identity_settings.heartbeat_interval_s * 3 + 5)
    gone = await seed_station(sf, connected=False)
    silent = await seed_station(sf, last_seen_at=datetime.now(UTC) - silence)
    busy = await seed_station(sf, statuses=("Charging", "Faulted"))
    offline = start_body(gone)
    await refused(api, ok, offline, 409, "CHARGER_OFFLINE")
    await refused(api, ok, start_body(silent), 409, "CHARGER_OFFLINE")
    taken = start_body(busy, 1)
    await refused(api, ok, taken, 409, "CONNECTOR_BUSY")
    await refused(api, ok, start_body(busy, 2), 409, "CONNECTOR_FAULTED")
    await refused(api, ok, start_body("CB-NO-SUCH-CHARGER"), 404, "NOT_FOUND")
    await refused(api, ok, start_body(free, 7), 422, "VALIDATION_FAILED")
    await refused(api, ok, start_body(free, request_id="short"), 422, "VALIDATION_FAILED")

    # None of these started a session.
    for who, body in ((driver, nothing), (ok, offline), (ok, taken)):
        wid = driver_workflow_id(who.user_id, body["charge_box_id"], body["client_request_id"])
        with pytest.raises(RPCError) as missing:
            await temporal_client.get_workflow_handle(wid).describe()
        assert missing.value.status == RPCStatusCode.NOT_FOUND

    banned = await person(auth_service, "banned")
    await seed_card(sf, owner=banned)
    admin = await person(auth_service, "banner", role="admin")
    ban = await api.post(
        f"/api/v1/users/{banned.user_id}/ban", json={"reason": "test"}, headers=admin.headers
    )
    assert ban.status_code == 200, ban.text
    await refused(api, banned, start_body(free), 403, "ACCOUNT_BANNED")


async def test_the_charger_refusing_is_charger_refused(
    api: httpx.AsyncClient,
    gateway: Gateway,
    auth_service: AuthService,
    session_factory: SessionFactory,
) -> None:
    driver = await person(auth_service, "refused")
    tag = await seed_card(session_factory, owner=driver)
    cb = await seed_station(session_factory, connected=False)
    async with plugged_in(gateway, cb, start_answer="Rejected") as cp:
        body = start_body(cb)
        await refused(api, driver, body, 409, "CHARGER_REFUSED")
        assert cp.remote_starts == [{"id_tag": tag, "connector_id": 1}]
        # The same request again: the same answer, and no second RemoteStartTransaction.
        await refused(api, driver, body, 409, "CHARGER_REFUSED")
        assert len(cp.remote_starts) == 1
