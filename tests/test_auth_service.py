"""The real BetterAuth service: provisioning, sign-in, JWTs verified against its real JWKS."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from api.auth_jwt import InvalidToken, JwtVerifier
from config.settings import libpq_url
from tests.fixtures.auth import AuthService, create_user_and_sign_in, ensure_user, sign_in
from tests.helpers import eventually

PASSWORD = "correct-horse-battery-staple"


def _email(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}@example.com"


@pytest.fixture
async def client(auth_service: AuthService) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=auth_service.base_url, timeout=10.0) as c:
        yield c


@pytest.fixture
async def verifier(auth_service: AuthService) -> AsyncIterator[JwtVerifier]:
    v = JwtVerifier.for_auth_service(auth_service.base_url)
    yield v
    await v.aclose()


async def _jwt(client: httpx.AsyncClient, session_token: str) -> str:
    response = await client.get(
        "/api/auth/token", headers={"Authorization": f"Bearer {session_token}"}
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["token"]
    return token


def _segments(token: str) -> list[str]:
    return token.split(".")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_internal_users_is_idempotent(auth_service: AuthService) -> None:
    email = _email("driver")
    first = await ensure_user(auth_service, email, password=PASSWORD, name="Dee Driver")
    assert first["created"] is True
    assert first["email"] == email
    assert first["role"] == "customer"  # the default role

    again = await ensure_user(auth_service, email.upper(), password=PASSWORD)
    assert again == {**first, "created": False}

    promoted = await ensure_user(auth_service, email, role="admin")
    assert promoted["id"] == first["id"]
    assert promoted["role"] == "admin"
    assert promoted["created"] is False


async def test_internal_users_concurrent_calls_create_once(auth_service: AuthService) -> None:
    email = _email("racer")
    results = await asyncio.gather(*(ensure_user(auth_service, email) for _ in range(5)))
    assert len({r["id"] for r in results}) == 1
    assert sum(r["created"] for r in results) == 1


@pytest.fixture
async def internal(auth_service: AuthService) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=auth_service.internal_url, timeout=10.0) as c:
        yield c


async def test_internal_users_requires_the_internal_token(
    internal: httpx.AsyncClient, auth_service: AuthService
) -> None:
    body = {"email": _email("intruder")}
    assert (await internal.post("/internal/users", json=body)).status_code == 401
    wrong = {"Authorization": "Bearer not-the-token"}
    assert (await internal.post("/internal/users", json=body, headers=wrong)).status_code == 401
    # Validation only happens once the caller is trusted.
    bad = await internal.post(
        "/internal/users", json={"email": "nope"}, headers=auth_service.internal_headers()
    )
    assert bad.status_code == 422
    bad_role = await internal.post(
        "/internal/users",
        json={"email": _email("x"), "role": "root"},
        headers=auth_service.internal_headers(),
    )
    assert bad_role.status_code == 422


async def test_the_public_port_has_no_internal_api(
    client: httpx.AsyncClient, auth_service: AuthService
) -> None:
    """The attack: reach the admin API on the public port, with a valid token even."""
    for method, path in (
        ("POST", "/internal/users"),
        ("GET", "/internal/users"),
        ("POST", "/internal/impersonations"),
        ("POST", "/internal/scan-sign-ins"),
    ):
        answer = await client.request(
            method, path, json={"email": _email("x")}, headers=auth_service.internal_headers()
        )
        assert answer.status_code == 404, (method, path, answer.text)
        assert answer.json()["error"] == "not_found"
    # The private listener is another port, on loopback by default.
    assert auth_service.internal_url != auth_service.base_url


async def test_internal_tokens_are_per_caller(
    internal: httpx.AsyncClient, auth_service: AuthService
) -> None:
    listing = "/internal/users"
    # The API's token lists users; the worker's and the gateway's tokens are other callers'
    # tokens, refused on a route that is not theirs.
    assert (await internal.get(listing, headers=auth_service.internal_headers())).status_code == 200
    for caller in ("worker", "gateway"):
        refused = await internal.get(listing, headers=auth_service.internal_headers(caller))
        assert refused.status_code == 403, (caller, refused.text)
    # A token no caller has (the auth secret was the old shared default) is not even routed.
    for token in ("polaris-dev-auth-secret-change-me-0123456789", "x" * 43):
        answer = await internal.get(listing, headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 401, token
    unknown = await internal.get("/internal/nothing-here", headers={"Authorization": "Bearer x"})
    assert unknown.status_code == 401
    # The worker provisions users and compensates; it does not ban anyone.
    worker = auth_service.internal_headers("worker")
    made = await internal.post("/internal/users", json={"email": _email("w")}, headers=worker)
    assert made.status_code == 200, made.text
    ban = await internal.post(f"/internal/users/{made.json()['id']}/ban", json={}, headers=worker)
    assert ban.status_code == 403


async def test_public_sign_up_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/auth/sign-up/email",
        json={"email": _email("walk-in"), "password": PASSWORD, "name": "Walk In"},
    )
    assert response.status_code in (400, 403), response.text
    assert "set-auth-token" not in response.headers


async def test_get_session_signed_out_is_null(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/auth/get-session")
    assert response.status_code == 200
    assert response.json() is None


async def test_wrong_password_is_refused(
    client: httpx.AsyncClient, auth_service: AuthService
) -> None:
    email = _email("forgetful")
    await ensure_user(auth_service, email, password=PASSWORD)
    response = await client.post(
        "/api/auth/sign-in/email", json={"email": email, "password": "wrong-password-123"}
    )
    assert response.status_code == 401


async def test_sign_in_token_and_verify(
    client: httpx.AsyncClient, auth_service: AuthService, verifier: JwtVerifier
) -> None:
    email = _email("admin")
    user = await ensure_user(auth_service, email, password=PASSWORD, role="admin")
    session_token = await sign_in(auth_service, email, PASSWORD)

    session = await client.get(
        "/api/auth/get-session", headers={"Authorization": f"Bearer {session_token}"}
    )
    assert session.status_code == 200
    assert session.json()["user"]["email"] == email

    token = await _jwt(client, session_token)
    header = json.loads(_unb64(_segments(token)[0]))
    assert header["alg"] == "EdDSA"

    claims = await verifier.verify(token)
    assert claims.sub == user["id"]
    assert claims.email == email
    assert claims.role == "admin"
    assert claims.raw["iss"] == auth_service.base_url
    assert claims.raw["aud"] == auth_service.base_url
    assert claims.exp > claims.raw["iat"]


async def test_tampered_tokens_are_refused(
    client: httpx.AsyncClient, auth_service: AuthService, verifier: JwtVerifier
) -> None:
    session_token = await create_user_and_sign_in(auth_service, _email("tamper"), PASSWORD)
    token = await _jwt(client, session_token)
    header, payload, signature = _segments(token)

    sig = bytearray(_unb64(signature))
    sig[0] ^= 0x01
    with pytest.raises(InvalidToken) as flipped:
        await verifier.verify(f"{header}.{payload}.{_b64(bytes(sig))}")
    assert flipped.value.reason == "bad_signature"

    claims = json.loads(_unb64(payload))
    claims["role"] = "admin"
    forged = _b64(json.dumps(claims).encode())
    with pytest.raises(InvalidToken) as escalated:
        await verifier.verify(f"{header}.{forged}.{signature}")
    assert escalated.value.reason == "bad_signature"

    with pytest.raises(InvalidToken) as garbage:
        await verifier.verify("not-a-jwt")
    assert garbage.value.reason == "malformed"

    # alg=none (or any symmetric algorithm) never reaches a key.
    none_header = _b64(json.dumps({"alg": "none", "kid": "x"}).encode())
    with pytest.raises(InvalidToken) as none_alg:
        await verifier.verify(f"{none_header}.{payload}.{signature}")
    assert none_alg.value.reason == "unsupported_algorithm"


async def test_unknown_kid_is_refused_after_one_refetch(
    client: httpx.AsyncClient, auth_service: AuthService
) -> None:
    verifier = JwtVerifier.for_auth_service(auth_service.base_url, min_refetch_interval_s=0)
    try:
        session_token = await create_user_and_sign_in(auth_service, _email("kid"), PASSWORD)
        token = await _jwt(client, session_token)
        await verifier.verify(token)
        assert verifier.fetch_count == 1

        header, payload, signature = _segments(token)
        hdr = json.loads(_unb64(header))
        hdr["kid"] = "rotated-away"
        with pytest.raises(InvalidToken) as unknown:
            await verifier.verify(f"{_b64(json.dumps(hdr).encode())}.{payload}.{signature}")
        assert unknown.value.reason == "unknown_key"
        assert verifier.fetch_count == 2  # exactly one refetch for the unknown kid

        # Known kids keep verifying from the cache.
        await verifier.verify(token)
        assert verifier.fetch_count == 2
    finally:
        await verifier.aclose()


async def test_concurrent_verifications_fetch_the_jwks_once(
    client: httpx.AsyncClient, auth_service: AuthService, verifier: JwtVerifier
) -> None:
    session_token = await create_user_and_sign_in(auth_service, _email("crowd"), PASSWORD)
    token = await _jwt(client, session_token)
    results = await asyncio.gather(*(verifier.verify(token) for _ in range(20)))
    assert {c.sub for c in results} == {results[0].sub}
    assert verifier.fetch_count == 1


async def test_wrong_issuer_audience_and_expiry_are_refused(
    client: httpx.AsyncClient, auth_service: AuthService
) -> None:
    session_token = await create_user_and_sign_in(auth_service, _email("strict"), PASSWORD)
    token = await _jwt(client, session_token)
    jwks = auth_service.jwks_url
    base = auth_service.base_url

    other_issuer = JwtVerifier(jwks, issuer="https://auth.elsewhere.example", audience=base)
    other_audience = JwtVerifier(jwks, issuer=base, audience="https://api.elsewhere.example")
    exp = (await JwtVerifier(jwks, issuer=base, audience=base).verify(token)).exp
    later = JwtVerifier(jwks, issuer=base, audience=base, clock=lambda: exp + 1)
    earlier = JwtVerifier(jwks, issuer=base, audience=base, clock=lambda: exp - 3600)
    try:
        with pytest.raises(InvalidToken) as wrong_iss:
            await other_issuer.verify(token)
        assert wrong_iss.value.reason == "wrong_issuer"

        with pytest.raises(InvalidToken) as wrong_aud:
            await other_audience.verify(token)
        assert wrong_aud.value.reason == "wrong_audience"

        with pytest.raises(InvalidToken) as expired:
            await later.verify(token)
        assert expired.value.reason == "expired"

        # Issued "in the future" relative to the verifier's clock.
        with pytest.raises(InvalidToken) as early:
            await earlier.verify(token)
        assert early.value.reason == "not_yet_valid"
    finally:
        for v in (other_issuer, other_audience, later, earlier):
            await v.aclose()


async def test_magic_link_goes_to_the_outbox(
    client: httpx.AsyncClient, auth_service: AuthService, pg_url: str
) -> None:
    import psycopg

    email = _email("magic")
    await ensure_user(auth_service, email)
    response = await client.post("/api/auth/sign-in/magic-link", json={"email": email})
    assert response.status_code == 200, response.text

    async def queued() -> str:
        async with await psycopg.AsyncConnection.connect(libpq_url(pg_url)) as conn:
            cur = await conn.execute(
                "SELECT url FROM auth.mail_outbox WHERE to_email = %s AND sent_at IS NULL",
                (email,),
            )
            row = await cur.fetchone()
        assert row is not None, "no magic-link mail queued"
        return str(row[0])

    url: str = await eventually(queued, timeout=10)
    assert url.startswith(f"{auth_service.base_url}/api/auth/magic-link/verify?token=")
    # The link is a credential: it must not be printed outside dev.
    assert url not in auth_service.log_path.read_text(errors="replace")


async def test_log_carries_no_secrets(client: httpx.AsyncClient, auth_service: AuthService) -> None:
    email = _email("quiet")
    session_token = await create_user_and_sign_in(auth_service, email, PASSWORD)
    jwt = await _jwt(client, session_token)

    def logged_request() -> bool:
        return "/api/auth/token" in auth_service.log_path.read_text(errors="replace")

    await eventually(logged_request, timeout=10)
    log = auth_service.log_path.read_text(errors="replace")
    for secret in (
        PASSWORD,
        session_token,
        session_token.split(".")[0],
        jwt,
        *auth_service.internal_tokens.values(),
    ):
        assert secret not in log


async def test_a_magic_link_never_points_at_an_untrusted_console(
    client: httpx.AsyncClient, auth_service: AuthService, pg_url: str
) -> None:
    """The attack: request a victim's magic link with a callback on the attacker's own
    `/console/auth/magic` page, hoping the mailed link (its token) lands there. Refused, or the
    mail keeps the auth service's own link: the token never names another origin."""
    import psycopg

    email = _email("phish")
    await ensure_user(auth_service, email)
    response = await client.post(
        "/api/auth/sign-in/magic-link",
        json={"email": email, "callbackURL": "https://evil.example/console/auth/magic"},
    )
    assert response.status_code in (200, 403), response.text
    await asyncio.sleep(1)
    async with await psycopg.AsyncConnection.connect(libpq_url(pg_url)) as conn:
        cur = await conn.execute("SELECT url FROM auth.mail_outbox WHERE to_email = %s", (email,))
        urls = [str(r[0]) for r in await cur.fetchall() if r[0]]
    assert all(u.startswith(f"{auth_service.base_url}/") for u in urls), urls
    assert not any("evil.example" in u.split("?")[0] for u in urls), urls
