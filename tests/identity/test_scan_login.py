"""Scan-to-login and tap-to-add end to end, and the attacks on them, against the real stack: a real
ocpp charge point on a real gateway, the real API app, the real auth service (BetterAuth).

Threat model: docs/identity.md, "Scan-to-login: threat model".
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from ocpp.v16 import call
from sqlalchemy import func, select, update
from temporalio.client import Client

from api.app import create_app
from api.auth_jwt import JwtVerifier
from api.deps import AppState
from config.settings import Settings
from db.engine import SessionFactory
from db.identity_models import ScanArm
from db.models import AuditLog, Charger, EvCard, session_intents
from db.scan_secrets import rotate_scan_secret
from gateway.main import Gateway
from tests.fixtures.auth import AuthService
from tests.gateway.conftest import charger_session, seed_charger
from tests.helpers import process_secrets, reset_rate_limits
from tests.identity.conftest import person, seed_card

pytestmark = pytest.mark.timeout(120)

CHARGER_PASSWORD = "charger-password-0123456789"
REPO_ROOT = str(Path(__file__).resolve().parents[2])


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


@pytest.fixture
async def api_from(
    identity_settings: Settings,
    engine: Any,
    session_factory: SessionFactory,
    temporal_client: Client,
) -> AsyncIterator[Callable[[str], httpx.AsyncClient]]:
    """One real API app; ``api_from(address)`` is a client calling it from that address."""
    await reset_rate_limits(session_factory)
    app = create_app(identity_settings)
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(httpx.AsyncClient(timeout=30.0))
        state = AppState(
            settings=identity_settings,
            engine=engine,
            sessions=session_factory,
            http=http,
            verifier=JwtVerifier.for_auth_service(
                identity_settings.auth_base_url, http_client=http
            ),
        )
        state._temporal = temporal_client
        app.state.polaris = state
        clients: list[httpx.AsyncClient] = []

        def client(address: str) -> httpx.AsyncClient:
            transport = httpx.ASGITransport(app=app, client=(address, 50000))
            made = httpx.AsyncClient(transport=transport, base_url="http://api")
            clients.append(made)
            return made

        try:
            yield client
        finally:
            for made in clients:
                await made.aclose()


async def scan_ready_charger(factory: SessionFactory) -> tuple[str, str]:
    """An authenticated charger with a QR secret: (chargeBoxId, secret)."""
    cb = await seed_charger(factory, password=CHARGER_PASSWORD)
    async with factory.begin() as db:
        rotated = await rotate_scan_secret(
            db, cb, actor="test", source=None, page_url="https://polaris.example/scan"
        )
    return cb, rotated.secret


async def arm(api: httpx.AsyncClient, cb: str, secret: str) -> httpx.Response:
    return await api.post("/api/v1/scan/login", json={"charge_box_id": cb, "secret": secret})


async def tap(gateway: Gateway, cb: str, id_tag: str) -> str:
    async with charger_session(gateway, cb, password=CHARGER_PASSWORD) as cp:
        answer = await cp.call(call.Authorize(id_tag=id_tag))
    return str(answer.id_tag_info["status"])


async def claim(api: httpx.AsyncClient, armed: httpx.Response) -> httpx.Response:
    body = armed.json()
    return await api.post(f"/api/v1/scan/{body['scan_id']}/exchange", json={"claim": body["claim"]})


async def intents_for(factory: SessionFactory, cb: str) -> int:
    async with factory() as db:
        rows = await db.execute(
            select(session_intents.c.id).where(session_intents.c.charge_box_id == cb)
        )
        return len(rows.all())


def jwt_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


async def audit_rows(factory: SessionFactory, action: str, subject: str) -> list[AuditLog]:
    async with factory() as db:
        rows = await db.scalars(
            select(AuditLog).where(AuditLog.action == action, AuditLog.subject == subject)
        )
        return list(rows)


async def test_qr_scan_to_login(
    api: httpx.AsyncClient,
    gateway: Gateway,
    auth_service: AuthService,
    session_factory: SessionFactory,
    identity_settings: Settings,
) -> None:
    driver = await person(auth_service, "scanner")
    tag = await seed_card(session_factory, owner=driver)
    cb, secret = await scan_ready_charger(session_factory)

    armed = await arm(api, cb, secret)
    assert armed.status_code == 201, armed.text
    busy = await arm(api, cb, secret)
    assert busy.status_code == 409 and busy.json()["error"] == "SCAN_BUSY"
    waiting = await claim(api, armed)
    assert waiting.status_code == 202
    scan_id = armed.json()["scan_id"]
    wrong = await api.post(f"/api/v1/scan/{scan_id}/exchange", json={"claim": "x" * 43})
    assert wrong.status_code == 404

    # The driver's tap is answered as any tap (the sign-in only records it), then the arm is
    # used up: the next tap is an ordinary one.
    assert await tap(gateway, cb, tag) == "Accepted"
    assert await tap(gateway, cb, "UNKNOWN-TAG-1") == "Invalid"

    signed = await claim(api, armed)
    assert signed.status_code == 200, signed.text
    body = signed.json()
    assert body["status"] == "signed_in" and body["user_id"] == driver.user_id
    # Only a short-lived JWT: no session token, not even the card's idTag.
    assert set(body) == {"status", "scan_id", "user_id", "jwt", "expires_at"}
    assert driver.session_token not in signed.text
    claims = jwt_claims(body["jwt"])
    assert claims["amr"] == ["scan"] and claims["sub"] == driver.user_id
    assert claims["exp"] - claims["iat"] == identity_settings.scan_jwt_ttl_s <= 15 * 60
    me = await api.get("/api/v1/me", headers={"Authorization": f"Bearer {body['jwt']}"})
    assert me.status_code == 200 and me.json()["user_id"] == driver.user_id
    # The JWT is no BetterAuth credential: it neither opens a session there nor renews itself.
    async with httpx.AsyncClient(base_url=auth_service.base_url, timeout=10) as auth:
        as_session = await auth.get(
            "/api/auth/get-session", headers={"Authorization": f"Bearer {body['jwt']}"}
        )
        renewed = await auth.get(
            "/api/auth/token", headers={"Authorization": f"Bearer {body['jwt']}"}
        )
    assert as_session.json() is None
    assert renewed.status_code == 401

    used = await claim(api, armed)
    assert used.status_code == 409 and used.json()["error"] == "SCAN_USED"
    async with session_factory() as db:
        stored = await db.get(ScanArm, scan_id)
    assert stored is not None and stored.id_tag == tag and stored.result["status"] == "signed_in"


async def test_arming_without_the_qr_secret_is_refused_and_unknown_looks_known(
    api: httpx.AsyncClient, session_factory: SessionFactory
) -> None:
    cb, secret = await scan_ready_charger(session_factory)
    no_code = await seed_charger(session_factory, password=CHARGER_PASSWORD)

    missing = await api.post("/api/v1/scan/login", json={"charge_box_id": cb})
    assert missing.status_code == 422
    answers = [
        await arm(api, cb, secrets.token_urlsafe(32)),  # known charger, wrong secret
        await arm(api, f"CB-NOSUCH-{uuid.uuid4().hex[:8]}", secret),  # unknown charger
        await arm(api, no_code, secret),  # known charger that has no QR code at all
    ]
    assert {a.status_code for a in answers} == {404}
    assert answers[0].json() == answers[1].json() == answers[2].json()
    assert answers[0].headers.get("content-length") == answers[1].headers.get("content-length")
    async with session_factory() as db:
        armed = await db.scalar(select(ScanArm.id).where(ScanArm.charge_box_id == cb))
    assert armed is None
    refusals = await audit_rows(session_factory, "scan.arm_refused", cb)
    assert [r.details["reason"] for r in refusals] == ["refused"]


async def test_claim_after_the_window_is_refused(
    api: httpx.AsyncClient,
    gateway: Gateway,
    auth_service: AuthService,
    session_factory: SessionFactory,
    identity_settings: Settings,
) -> None:
    driver = await person(auth_service, "slow")
    tag = await seed_card(session_factory, owner=driver)
    cb, secret = await scan_ready_charger(session_factory)
    armed = await arm(api, cb, secret)
    assert armed.status_code == 201, armed.text
    assert await tap(gateway, cb, tag) == "Accepted"

    # The tap happened a moment longer ago than the window allows.
    late = timedelta(seconds=identity_settings.scan_claim_window_s + 1)
    async with session_factory.begin() as db:
        await db.execute(
            update(ScanArm)
            .where(ScanArm.id == armed.json()["scan_id"])
            .values(consumed_at=ScanArm.consumed_at - late)
        )
    for _ in range(2):
        refused = await claim(api, armed)
        assert refused.status_code == 410 and refused.json()["error"] == "SCAN_EXPIRED"
        assert "jwt" not in refused.text

    # An arm nobody tapped is refused once its short life is over too.
    unused = await arm(api, cb, secret)
    assert unused.status_code == 201, unused.text
    async with session_factory.begin() as db:
        await db.execute(
            update(ScanArm)
            .where(ScanArm.id == unused.json()["scan_id"])
            .values(expires_at=ScanArm.created_at)
        )
    assert await tap(gateway, cb, tag) == "Accepted"
    expired = await claim(api, unused)
    assert expired.status_code == 410 and expired.json()["error"] == "SCAN_EXPIRED"


async def test_an_admin_card_never_signs_in_by_scan(
    api: httpx.AsyncClient,
    gateway: Gateway,
    auth_service: AuthService,
    session_factory: SessionFactory,
) -> None:
    admin = await person(auth_service, "opcard", role="admin")
    tag = await seed_card(session_factory, owner=admin)
    cb, secret = await scan_ready_charger(session_factory)
    armed = await arm(api, cb, secret)
    assert armed.status_code == 201, armed.text
    assert await tap(gateway, cb, tag) == "Accepted"

    refused = await claim(api, armed)
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"] == "SCAN_SIGN_IN_REFUSED"
    assert "jwt" not in refused.json()
    again = await claim(api, armed)
    assert again.status_code == 409
    rows = await audit_rows(session_factory, "auth.scan_sign_in", admin.user_id)
    assert [(r.details["signed_in"], r.details["reason"]) for r in rows] == [
        (False, "admin_refused")
    ]
    # The auth service refuses it on its own too (the API is not the only gate).
    async with httpx.AsyncClient(base_url=auth_service.internal_url, timeout=10) as auth:
        direct = await auth.post(
            "/internal/scan-sign-ins",
            json={"userId": admin.user_id},
            headers=auth_service.internal_headers("api"),
        )
    assert direct.status_code == 403 and direct.json()["error"] == "admin_refused"


async def test_passwordless_charger_is_refused(
    api: httpx.AsyncClient,
    gateway: Gateway,
    auth_service: AuthService,
    session_factory: SessionFactory,
) -> None:
    admin = await person(auth_service, "opnopw", role="admin")
    driver = await person(auth_service, "nopw")
    tag = await seed_card(session_factory, owner=driver)
    open_charger = await seed_charger(session_factory)
    rotate = await api.post(f"/api/v1/chargers/{open_charger}/scan-secret", headers=admin.headers)
    assert rotate.status_code == 409 and rotate.json()["error"] == "CHARGER_UNAUTHENTICATED"

    # A charger that had a code, then lost its password (reset, marked unauthenticated).
    cb, secret = await scan_ready_charger(session_factory)
    async with session_factory.begin() as db:
        await db.execute(
            update(Charger)
            .where(Charger.charge_box_id == cb)
            .values(password_hash=None, allow_unauthenticated=True)
        )
    refused = await arm(api, cb, secret)
    assert refused.status_code == 403 and refused.json()["error"] == "SCAN_UNAVAILABLE"

    # Even an arm that exists there (made before the password went) records no tap: anyone can
    # send an Authorize in the name of a charger that has no password.
    scan_id = str(uuid.uuid4())
    async with session_factory.begin() as db:
        db.add(
            ScanArm(
                id=scan_id,
                charge_box_id=cb,
                purpose="login",
                claim_sha256="0" * 64,
                armed_by="test",
                expires_at=datetime.now(UTC) + timedelta(days=1),
                result={},
            )
        )
    async with charger_session(gateway, cb) as cp:
        answer = await cp.call(call.Authorize(id_tag=tag))
    assert answer.id_tag_info["status"] == "Accepted"
    async with session_factory() as db:
        stored = await db.get(ScanArm, scan_id)
    assert stored is not None and stored.consumed_at is None and stored.id_tag is None


async def test_a_rotated_secret_invalidates_the_old_one(
    api: httpx.AsyncClient,
    auth_service: AuthService,
    session_factory: SessionFactory,
    identity_settings: Settings,
) -> None:
    admin = await person(auth_service, "rotator", role="admin")
    driver = await person(auth_service, "norotate")
    cb = await seed_charger(session_factory, password=CHARGER_PASSWORD)

    assert (
        await api.post(f"/api/v1/chargers/{cb}/scan-secret", headers=driver.headers)
    ).status_code == 403
    first = await api.post(f"/api/v1/chargers/{cb}/scan-secret", headers=admin.headers)
    assert first.status_code == 201, first.text
    assert first.headers["cache-control"] == "no-store"
    old = first.json()["secret"]
    assert first.json()["qr_url"].endswith(f"#k={old}")
    second = await api.post(f"/api/v1/chargers/{cb}/scan-secret", headers=admin.headers)
    new = second.json()["secret"]
    assert new != old

    stale = await arm(api, cb, old)
    unknown = await arm(api, f"CB-NOSUCH-{uuid.uuid4().hex[:8]}", old)
    assert stale.status_code == unknown.status_code == 404
    assert stale.json() == unknown.json()
    assert (await arm(api, cb, new)).status_code == 201

    rotations = await audit_rows(session_factory, "scan.secret_rotated", cb)
    assert [r.actor for r in rotations] == [f"user:{admin.user_id}"] * 2
    async with session_factory() as db:
        logged = json.dumps(
            [r.details for r in await db.scalars(select(AuditLog).where(AuditLog.subject == cb))]
        )
    assert old not in logged and new not in logged


async def test_rotate_from_the_cli(
    api: httpx.AsyncClient, pg_url: str, tmp_path: Path, session_factory: SessionFactory
) -> None:
    cb, before = await scan_ready_charger(session_factory)
    env = {
        **os.environ,
        "PYTHONPATH": REPO_ROOT,
        "POLARIS_ENV": "test",
        "POLARIS_DATABASE_URL": pg_url,
        "POLARIS_DATA_DIR": str(tmp_path),
        **process_secrets(),
    }
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "cli.main", "scan", "rotate-secret", cb],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(":", 1) for line in done.stdout.splitlines() if ":  " in line)
    secret = lines["secret"].strip()
    assert (await arm(api, cb, before)).status_code == 404
    assert (await arm(api, cb, secret)).status_code == 201


async def test_an_arming_flood_does_not_block_a_normal_tap(
    api_from: Callable[[str], httpx.AsyncClient],
    gateway: Gateway,
    auth_service: AuthService,
    session_factory: SessionFactory,
    identity_settings: Settings,
) -> None:
    driver = await person(auth_service, "charging")
    tag = await seed_card(session_factory, owner=driver)
    cb, secret = await scan_ready_charger(session_factory)
    attacker = api_from("198.51.100.66")

    # One address: one arm, then SCAN_BUSY, then its own rate limit.
    flood = [await arm(attacker, cb, secret) for _ in range(8)]
    codes = [a.status_code for a in flood]
    assert codes[0] == 201 and set(codes[1:5]) == {409} and set(codes[5:]) == {429}
    # Many addresses, arm after arm (each one's 30 s simulated as spent): the charger's own limit.
    per_charger = identity_settings.scan_arms_per_charger
    answers = []
    for n in range(per_charger + 2):
        async with session_factory.begin() as db:
            await db.execute(
                update(ScanArm)
                .where(ScanArm.charge_box_id == cb, ScanArm.consumed_at.is_(None))
                .values(expires_at=ScanArm.created_at)
            )
        answers.append((await arm(api_from(f"198.51.100.{n + 1}"), cb, secret)).status_code)
    assert answers == [201] * (per_charger - 1) + [429] * 3
    limited = await arm(api_from("198.51.100.200"), cb, secret)
    assert limited.json()["error"] == "RATE_LIMITED" and int(limited.headers["Retry-After"]) >= 1

    # Re-open the last accepted arm: taps are still answered as without it. An unknown card is
    # Invalid and leaves the arm alone; a driver's card is Accepted and a charge is prepared.
    async with session_factory.begin() as db:
        latest = (
            await db.execute(
                select(ScanArm.id)
                .where(ScanArm.charge_box_id == cb)
                .order_by(ScanArm.created_at.desc())
                .limit(1)
            )
        ).scalar_one()
        await db.execute(
            update(ScanArm)
            .where(ScanArm.id == latest)
            .values(expires_at=ScanArm.created_at + timedelta(days=1))
        )
    assert await tap(gateway, cb, "UNKNOWN-TAG-2") == "Invalid"
    async with session_factory() as db:
        open_arms = (
            await db.scalars(
                select(ScanArm.id).where(
                    ScanArm.charge_box_id == cb,
                    ScanArm.consumed_at.is_(None),
                    ScanArm.expires_at > func.now(),
                )
            )
        ).all()
    assert open_arms == [latest]
    assert await tap(gateway, cb, tag) == "Accepted"
    assert await intents_for(session_factory, cb) == 1


async def test_operator_tap_to_add(
    api: httpx.AsyncClient,
    gateway: Gateway,
    auth_service: AuthService,
    session_factory: SessionFactory,
) -> None:
    admin = await person(auth_service, "kiosk", role="admin")
    driver = await person(auth_service, "notop")
    cb = await seed_charger(session_factory, password=CHARGER_PASSWORD)
    refused = await api.post(
        f"/api/v1/chargers/{cb}/scan", json={"purpose": "register"}, headers=driver.headers
    )
    assert refused.status_code == 403
    # An operator cannot arm a sign-in: it would hand them a driver's account.
    login = await api.post(
        f"/api/v1/chargers/{cb}/scan", json={"purpose": "login"}, headers=admin.headers
    )
    assert login.status_code == 422
    armed = await api.post(
        f"/api/v1/chargers/{cb}/scan", json={"purpose": "register"}, headers=admin.headers
    )
    assert armed.status_code == 201, armed.text
    new_tag = f"NEW{uuid.uuid4().hex[:10].upper()}"
    assert await tap(gateway, cb, new_tag) == "Blocked"
    assert await intents_for(session_factory, cb) == 0  # tap-to-add prepares no charge
    done = await claim(api, armed)
    assert done.status_code == 200, done.text
    assert done.json() == {
        "status": "registered",
        "scan_id": armed.json()["scan_id"],
        "id_tag": new_tag,
    }
    async with session_factory() as db:
        assert await db.get(EvCard, new_tag) is not None


async def test_scan_arming_is_rate_limited_per_address(api: httpx.AsyncClient) -> None:
    answers = [
        await arm(api, f"CB-NOSUCH-{uuid.uuid4().hex[:8]}", secrets.token_urlsafe(32))
        for _ in range(6)
    ]
    assert [a.status_code for a in answers[:5]] == [404] * 5
    assert answers[5].status_code == 429
    assert answers[5].json()["error"] == "RATE_LIMITED"
    assert int(answers[5].headers["Retry-After"]) >= 1
