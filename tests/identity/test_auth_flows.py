"""Sign-in, JWTs, bans, tenancy and impersonation against the real auth service and API."""

from __future__ import annotations

import asyncio
import http.client
import json
import urllib.parse
import uuid

import httpx
import psycopg
import pytest
from sqlalchemy import select

from config.settings import libpq_url
from db.engine import SessionFactory
from db.models import AuditLog, ChargingSession, EvCard
from tests.fixtures.auth import AuthService, ensure_user
from tests.identity.conftest import (
    PASSWORD,
    jwt_for,
    latest_link,
    outbox_urls,
    person,
    seed_card,
    unique_email,
)

pytestmark = pytest.mark.timeout(120)


async def audit_actions(factory: SessionFactory, subject: str) -> list[str]:
    async with factory() as db:
        rows = await db.scalars(
            select(AuditLog.action).where(AuditLog.subject == subject).order_by(AuditLog.id)
        )
        return list(rows.all())


async def test_magic_link_round_trip(
    api: httpx.AsyncClient, auth_service: AuthService, pg_url: str, session_factory: SessionFactory
) -> None:
    email = unique_email("driver")
    user = await ensure_user(auth_service, email)
    async with httpx.AsyncClient(base_url=auth_service.base_url, timeout=10) as auth:
        asked = await auth.post(
            "/api/auth/sign-in/magic-link",
            json={"email": email},
            headers={"X-Forwarded-For": f"198.51.100.{uuid.uuid4().int % 250}"},
        )
        assert asked.status_code == 200, asked.text
        link = await latest_link(pg_url, email)
        assert "/api/auth/magic-link/verify?token=" in link
        opened = await auth.get(link, follow_redirects=False)
        session_token = opened.headers.get("set-auth-token")
        assert opened.status_code in (200, 302), opened.text
        assert session_token, "opening the link gave no session"
        # Single use: the same link a second time signs nobody in.
        again = await auth.get(link, follow_redirects=False)
        assert again.headers.get("set-auth-token") is None
        assert "INVALID_TOKEN" in again.headers.get("location", again.text)
    jwt = await jwt_for(auth_service, session_token)
    me = await api.get("/api/v1/me", headers={"Authorization": f"Bearer {jwt}"})
    assert me.status_code == 200, me.text
    assert me.json()["user_id"] == user["id"] and me.json()["email"] == email
    actions = await audit_actions(session_factory, user["id"])
    assert "auth.magic_link.requested" in actions and "auth.sign_in" in actions


async def test_magic_link_does_not_enumerate_and_is_throttled(
    auth_service: AuthService, pg_url: str
) -> None:
    known = unique_email("known")
    unknown = unique_email("nobody")
    await ensure_user(auth_service, known)
    async with httpx.AsyncClient(base_url=auth_service.base_url, timeout=10) as auth:

        async def ask(email: str, ip: str) -> httpx.Response:
            return await auth.post(
                "/api/auth/sign-in/magic-link",
                json={"email": email},
                headers={"X-Forwarded-For": ip},
            )

        a = await ask(known, "192.0.2.10")
        b = await ask(unknown, "192.0.2.11")
        assert (a.status_code, a.json()) == (b.status_code, b.json()) == (200, {"status": True})
        assert await outbox_urls(pg_url, unknown) == []
        # Per address: at most 3 links per 15 minutes, silently.
        for i in range(4):
            answer = await ask(known, f"192.0.2.{20 + i}")
            assert answer.status_code == 200
        assert len(await outbox_urls(pg_url, known)) == 3
        # Per client: 5 requests a minute, then 429 with Retry-After.
        codes = [(await ask(unique_email("x"), "192.0.2.99")).status_code for _ in range(6)]
        assert codes[:5] == [200] * 5 and codes[5] == 429
        limited = await ask(unique_email("x"), "192.0.2.99")
        assert int(limited.headers["retry-after"]) >= 1


async def test_admin_sign_in_and_roles(api: httpx.AsyncClient, auth_service: AuthService) -> None:
    admin = await person(auth_service, "admin", role="admin")
    driver = await person(auth_service, "driver")
    listed = await api.get("/api/v1/users", params={"search": admin.email}, headers=admin.headers)
    assert listed.status_code == 200, listed.text
    assert [u["id"] for u in listed.json()["users"]] == [admin.user_id]
    refused = await api.get("/api/v1/users", headers=driver.headers)
    assert refused.status_code == 403
    assert refused.json()["error"] == "FORBIDDEN"
    # The Lago webhook replay route uses the same admin check.
    replay = await api.post("/api/admin/webhooks/lago/999999999/replay", headers=driver.headers)
    assert replay.status_code == 403


async def test_jwt_verification_and_tampering(
    api: httpx.AsyncClient, auth_service: AuthService
) -> None:
    driver = await person(auth_service, "jwt")
    ok = await api.get("/api/v1/me", headers=driver.headers)
    assert ok.status_code == 200 and ok.json()["role"] == "customer"
    header, payload, signature = driver.jwt.split(".")
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    for token in (f"{header}.{payload}.{flipped}", "not-a-jwt", driver.session_token):
        bad = await api.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert bad.status_code == 401, token
        assert bad.json()["error"] == "UNAUTHENTICATED" and bad.json()["message"]
    missing = await api.get("/api/v1/me")
    assert missing.status_code == 401
    assert set(missing.json()) >= {"error", "message"}


async def test_ban_takes_effect_at_once_on_sensitive_routes(
    api: httpx.AsyncClient, auth_service: AuthService, session_factory: SessionFactory
) -> None:
    admin = await person(auth_service, "banner", role="admin")
    driver = await person(auth_service, "banned")
    tag = await seed_card(session_factory, owner=driver)
    banned = await api.post(
        f"/api/v1/users/{driver.user_id}/ban", json={"reason": "fraud"}, headers=admin.headers
    )
    assert banned.status_code == 200, banned.text
    assert banned.json()["banned"] is True
    # The JWT is still valid offline (reads) ...
    assert (await api.get("/api/v1/me", headers=driver.headers)).status_code == 200
    # ... but a sensitive action re-checks the live session: refused at once.
    lost = await api.post(f"/api/v1/me/cards/{tag}/report-lost", headers=driver.headers)
    assert lost.status_code == 401
    assert lost.json()["error"] == "SESSION_REVOKED"
    async with session_factory() as db:
        card = await db.get(EvCard, tag)
        assert card is not None and card.lost_at is None
    # And the user cannot sign in again.
    async with httpx.AsyncClient(base_url=auth_service.base_url, timeout=10) as auth:
        again = await auth.post(
            "/api/auth/sign-in/email", json={"email": driver.email, "password": "x" * 20}
        )
    assert again.status_code in (401, 403)
    assert "user.banned" in await audit_actions(session_factory, driver.user_id)
    # Role changes are audited too.
    promoted = await api.post(
        f"/api/v1/users/{driver.user_id}/role", json={"role": "admin"}, headers=admin.headers
    )
    assert promoted.status_code == 200 and promoted.json()["role"] == "admin"
    assert "user.role_changed" in await audit_actions(session_factory, driver.user_id)


async def test_cross_tenant_reads_are_404(
    api: httpx.AsyncClient, auth_service: AuthService, session_factory: SessionFactory
) -> None:
    alice = await person(auth_service, "alice")
    bob = await person(auth_service, "bob")
    tag = await seed_card(session_factory, owner=alice)
    workflow_id = f"session:test:{uuid.uuid4().hex}"
    async with session_factory() as db, db.begin():
        db.add(
            ChargingSession(
                workflow_id=workflow_id,
                state="billed",
                charge_box_id="CB-X",
                id_tag=tag,
                user_id=alice.user_id,
            )
        )
    assert (await api.get(f"/api/v1/me/cards/{tag}", headers=alice.headers)).status_code == 200
    mine = await api.get(f"/api/v1/me/sessions/{workflow_id}", headers=alice.headers)
    assert mine.status_code == 200
    listed = await api.get("/api/v1/me/sessions", headers=alice.headers)
    assert [s["workflow_id"] for s in listed.json()] == [workflow_id]
    for method, path in (
        ("GET", f"/api/v1/me/cards/{tag}"),
        ("GET", f"/api/v1/me/sessions/{workflow_id}"),
        ("POST", f"/api/v1/me/cards/{tag}/report-lost"),
    ):
        answer = await api.request(method, path, headers=bob.headers)
        assert answer.status_code == 404, (path, answer.text)
        assert answer.json()["error"] == "NOT_FOUND"
    assert (await api.get("/api/v1/me/sessions", headers=bob.headers)).json() == []
    # Operators' routes are not for drivers at all.
    assert (
        await api.get(f"/api/v1/sessions/{workflow_id}", headers=bob.headers)
    ).status_code == 403


async def test_impersonation_is_read_only_and_audited(
    api: httpx.AsyncClient, auth_service: AuthService, session_factory: SessionFactory
) -> None:
    admin = await person(auth_service, "operator", role="admin")
    driver = await person(auth_service, "impersonated")
    tag = await seed_card(session_factory, owner=driver)
    started = await api.post(
        "/api/v1/impersonation", json={"user_id": driver.user_id}, headers=admin.headers
    )
    assert started.status_code == 201, started.text
    as_driver = {"Authorization": f"Bearer {started.json()['jwt']}"}
    me = await api.get("/api/v1/me", headers=as_driver)
    assert me.status_code == 200
    assert me.json()["user_id"] == driver.user_id
    assert me.json()["impersonated_by"] == admin.user_id
    assert [c["id_tag"] for c in me.json()["cards"]] == [tag]
    lost = await api.post(f"/api/v1/me/cards/{tag}/report-lost", headers=as_driver)
    assert lost.status_code == 403
    assert lost.json()["error"] == "IMPERSONATION_READ_ONLY"
    async with session_factory() as db:
        card = await db.get(EvCard, tag)
        assert card is not None and card.lost_at is None
    # Impersonating is not being an admin.
    assert (await api.get("/api/v1/users", headers=as_driver)).status_code == 403
    stopped = await api.post("/api/v1/impersonation/stop", headers=as_driver)
    assert stopped.status_code == 204, stopped.text
    actions = [
        a
        for a in await audit_actions(session_factory, driver.user_id)
        if a.startswith("impersonation.")
    ]
    assert actions[0] == "impersonation.started"
    assert actions.count("impersonation.request") >= 3
    assert actions[-1] == "impersonation.ended"
    async with session_factory() as db:
        rows = (
            await db.scalars(
                select(AuditLog).where(
                    AuditLog.subject == driver.user_id, AuditLog.action == "impersonation.request"
                )
            )
        ).all()
    assert all(row.actor == f"user:{admin.user_id}" for row in rows)
    assert any(row.details["refused"] for row in rows)
    assert all(row.source == "203.0.113.7" for row in rows)
    audit = await api.get(
        "/api/v1/audit", params={"subject": driver.user_id}, headers=admin.headers
    )
    assert audit.status_code == 200 and audit.json()[0]["action"] == "impersonation.ended"


async def _session_token(pg_url: str, session_id: str) -> str:
    """The impersonation's session token, as only the auth service's database holds it."""
    async with await psycopg.AsyncConnection.connect(libpq_url(pg_url)) as conn:
        cur = await conn.execute('SELECT token FROM auth."session" WHERE id = %s', (session_id,))
        row = await cur.fetchone()
    assert row is not None
    return str(row[0])


async def test_impersonation_hands_out_no_session_token_and_cannot_write_at_the_auth_service(
    api: httpx.AsyncClient, auth_service: AuthService, pg_url: str, session_factory: SessionFactory
) -> None:
    """The attack: take the driver's BetterAuth session from an impersonation and use it on the
    auth service directly, to rename the driver and sign them out everywhere."""
    admin = await person(auth_service, "operator", role="admin")
    driver = await person(auth_service, "victim")
    started = await api.post(
        "/api/v1/impersonation", json={"user_id": driver.user_id}, headers=admin.headers
    )
    assert started.status_code == 201, started.text
    body = started.json()
    assert set(body) == {"user_id", "session_id", "jwt", "expires_at"}
    token = await _session_token(pg_url, body["session_id"])
    assert token not in started.text

    # Even holding the token (it never leaves the auth service), writes are refused there.
    as_impersonation = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=auth_service.base_url, timeout=10) as auth:
        read = await auth.get("/api/auth/get-session", headers=as_impersonation)
        assert read.status_code == 200 and read.json()["user"]["id"] == driver.user_id
        for path, payload in (
            ("/api/auth/update-user", {"name": "Pwned"}),
            ("/api/auth/revoke-sessions", {}),
            ("/api/auth/change-password", {"currentPassword": PASSWORD, "newPassword": "p" * 20}),
        ):
            refused = await auth.post(path, json=payload, headers=as_impersonation)
            assert refused.status_code == 403, (path, refused.text)
            assert refused.json()["error"] == "IMPERSONATION_READ_ONLY"
        # The driver is untouched: same name, their own session still signed in.
        mine = await auth.get(
            "/api/auth/get-session", headers={"Authorization": f"Bearer {driver.session_token}"}
        )
        assert mine.status_code == 200 and mine.json()["user"]["name"] != "Pwned"
        # BetterAuth's own admin impersonation (it answers with the session token) is closed.
        admin_token = await _admin_session(auth, admin.email)
        direct = await auth.post(
            "/api/auth/admin/impersonate-user",
            json={"userId": driver.user_id},
            headers={"Authorization": f"Bearer {admin_token}"},
        )
        assert direct.status_code == 403 and "set-auth-token" not in direct.headers
        # ... and stays closed when the path is spelt so that BetterAuth's router resolves it to
        # the same endpoint ("." / ".." segments, percent-encoded or not, doubled slashes).
        for sneaky in (
            "/api/auth/x/../admin/impersonate-user",
            "/api/auth/admin/x/%2e%2e/impersonate-user",
            "/api/auth/./admin/impersonate-user",
            "/api/auth//admin/impersonate-user",
        ):
            status, headers = await asyncio.to_thread(
                _raw_post, auth_service.base_url, sneaky, {"userId": driver.user_id}, admin_token
            )
            assert status in (403, 404), (sneaky, status)
            assert "set-auth-token" not in headers, sneaky
        # Signing the impersonation itself out is the one write it may make.
        out = await auth.post("/api/auth/sign-out", headers=as_impersonation)
        assert out.status_code == 200, out.text
    actions = await audit_actions(session_factory, driver.user_id)
    assert "auth.impersonation.started" in actions  # the auth service's side
    assert "auth.impersonation.token_issued" in actions
    assert actions.count("auth.impersonation.write_refused") == 3
    assert "impersonation.started" in actions  # the API's side
    async with session_factory() as db:
        refused_rows = (
            await db.scalars(
                select(AuditLog).where(
                    AuditLog.subject == driver.user_id,
                    AuditLog.action == "auth.impersonation.write_refused",
                )
            )
        ).all()
    assert all(row.actor == f"user:{admin.user_id}" for row in refused_rows)


async def _admin_session(auth: httpx.AsyncClient, email: str) -> str:
    signed = await auth.post("/api/auth/sign-in/email", json={"email": email, "password": PASSWORD})
    assert signed.status_code == 200, signed.text
    return str(signed.headers["set-auth-token"])


def _raw_post(
    base_url: str, path: str, body: dict[str, str], bearer: str
) -> tuple[int, dict[str, str]]:
    """POST with the path exactly as given (httpx would resolve its dot segments first)."""
    url = urllib.parse.urlsplit(base_url)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=10)
    try:
        conn.request(
            "POST",
            path,
            body=json.dumps(body),
            headers={"Authorization": f"Bearer {bearer}", "Content-Type": "application/json"},
        )
        response = conn.getresponse()
        response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()
