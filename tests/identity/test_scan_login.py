"""Scan-to-login and tap-to-add end to end: a real ocpp charge point, a real gateway, the API."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from ocpp.v16 import call
from sqlalchemy import select

from config.settings import Settings
from db.engine import SessionFactory
from db.identity_models import ScanArm
from db.models import EvCard, session_intents
from gateway.main import Gateway
from tests.fixtures.auth import AuthService
from tests.gateway.conftest import charger_session, seed_charger
from tests.identity.conftest import person, seed_card

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def gateway(identity_settings: Settings) -> AsyncIterator[Gateway]:
    settings = identity_settings.model_copy(
        update={"gateway_port": 0, "gateway_instance": f"gw-{uuid.uuid4().hex[:8]}"}
    )
    gw = Gateway(settings, relay_poll_interval_s=0.5)
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()


async def intents_for(factory: SessionFactory, cb: str) -> int:
    async with factory() as db:
        rows = await db.execute(
            select(session_intents.c.id).where(session_intents.c.charge_box_id == cb)
        )
        return len(rows.all())


async def test_qr_scan_to_login(
    api: httpx.AsyncClient,
    gateway: Gateway,
    auth_service: AuthService,
    session_factory: SessionFactory,
) -> None:
    driver = await person(auth_service, "scanner")
    tag = await seed_card(session_factory, owner=driver)
    cb = await seed_charger(session_factory)

    armed = await api.post("/api/v1/scan/login", json={"charge_box_id": cb})
    assert armed.status_code == 201, armed.text
    scan_id, claim = armed.json()["scan_id"], armed.json()["claim"]
    busy = await api.post("/api/v1/scan/login", json={"charge_box_id": cb})
    assert busy.status_code == 409 and busy.json()["error"] == "SCAN_BUSY"
    waiting = await api.post(f"/api/v1/scan/{scan_id}/exchange", json={"claim": claim})
    assert waiting.status_code == 202
    wrong = await api.post(f"/api/v1/scan/{scan_id}/exchange", json={"claim": "x" * 43})
    assert wrong.status_code == 404

    async with charger_session(gateway, cb) as cp:
        tapped = await cp.call(call.Authorize(id_tag=tag))
        # The arm is used up: the next tap is an ordinary one again.
        ordinary = await cp.call(call.Authorize(id_tag="UNKNOWN-TAG-1"))
    assert tapped.id_tag_info["status"] == "Blocked"
    assert ordinary.id_tag_info["status"] == "Invalid"
    assert await intents_for(session_factory, cb) == 0  # no charge was prepared

    signed = await api.post(f"/api/v1/scan/{scan_id}/exchange", json={"claim": claim})
    assert signed.status_code == 200, signed.text
    body = signed.json()
    assert body["status"] == "signed_in" and body["user_id"] == driver.user_id
    me = await api.get("/api/v1/me", headers={"Authorization": f"Bearer {body['jwt']}"})
    assert me.status_code == 200 and me.json()["user_id"] == driver.user_id
    async with httpx.AsyncClient(base_url=auth_service.base_url, timeout=10) as auth:
        session = await auth.get(
            "/api/auth/get-session",
            headers={"Authorization": f"Bearer {body['session_token']}"},
        )
    assert session.json()["user"]["id"] == driver.user_id
    used = await api.post(f"/api/v1/scan/{scan_id}/exchange", json={"claim": claim})
    assert used.status_code == 409 and used.json()["error"] == "SCAN_USED"
    async with session_factory() as db:
        arm = await db.get(ScanArm, scan_id)
    assert arm is not None and arm.id_tag == tag and arm.result["status"] == "signed_in"


async def test_operator_tap_to_add(
    api: httpx.AsyncClient,
    gateway: Gateway,
    auth_service: AuthService,
    session_factory: SessionFactory,
) -> None:
    admin = await person(auth_service, "kiosk", role="admin")
    driver = await person(auth_service, "notop")
    cb = await seed_charger(session_factory)
    refused = await api.post(
        f"/api/v1/chargers/{cb}/scan", json={"purpose": "register"}, headers=driver.headers
    )
    assert refused.status_code == 403
    armed = await api.post(
        f"/api/v1/chargers/{cb}/scan", json={"purpose": "register"}, headers=admin.headers
    )
    assert armed.status_code == 201, armed.text
    new_tag = f"NEW{uuid.uuid4().hex[:10].upper()}"
    async with charger_session(gateway, cb) as cp:
        tapped = await cp.call(call.Authorize(id_tag=new_tag))
    assert tapped.id_tag_info["status"] == "Blocked"
    done = await api.post(
        f"/api/v1/scan/{armed.json()['scan_id']}/exchange", json={"claim": armed.json()["claim"]}
    )
    assert done.status_code == 200, done.text
    assert done.json() == {
        "status": "registered",
        "scan_id": armed.json()["scan_id"],
        "id_tag": new_tag,
        "user_id": None,
        "session_token": None,
        "jwt": None,
    }
    async with session_factory() as db:
        assert await db.get(EvCard, new_tag) is not None


async def test_scan_arming_is_rate_limited(
    api: httpx.AsyncClient, session_factory: SessionFactory
) -> None:
    answers = []
    for _ in range(6):
        cb = await seed_charger(session_factory)
        answers.append(await api.post("/api/v1/scan/login", json={"charge_box_id": cb}))
    assert [a.status_code for a in answers[:5]] == [201] * 5
    assert answers[5].status_code == 429
    assert answers[5].json()["error"] == "RATE_LIMITED"
    assert int(answers[5].headers["Retry-After"]) >= 1
