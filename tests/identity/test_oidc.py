"""Generic OIDC sign-in for operators: the real auth service against a real (minimal) provider.

The provider is written here: Starlette under uvicorn in a thread, with discovery, an
``/authorize`` that "logs in" whoever the test says and redirects back with a code, a
``/token`` that checks the client secret and PKCE and returns an RS256 ``id_token`` (key made
in the test), ``/jwks`` and ``/userinfo``. A second auth service runs on its own database with
the ``POLARIS_OIDC_*`` variables; the flow is driven with httpx like a browser would.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import psycopg
import pytest
import uvicorn
from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from api.auth_jwt import JwtVerifier
from config.settings import libpq_url
from tests.fixtures.auth import AuthService, ensure_user, running_auth_service
from tests.helpers import free_port

pytestmark = pytest.mark.timeout(120)

CLIENT_ID = "polaris-operators"
CLIENT_SECRET = secrets.token_urlsafe(24)
PROVIDER_ID = "corp"


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    nonce: str | None
    code_challenge: str | None
    claims: dict[str, Any]


@dataclass
class Provider:
    """A tiny OpenID provider; ``who`` is the person currently "logged in" at it."""

    issuer: str
    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, {"kid": "test-key-1"}))
    who: dict[str, Any] = field(default_factory=dict)
    grants: dict[str, Grant] = field(default_factory=dict)
    tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    token_requests: int = 0

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self.discovery),
                Route("/authorize", self.authorize),
                Route("/token", self.token, methods=["POST"]),
                Route("/jwks", self.jwks),
                Route("/userinfo", self.userinfo),
            ]
        )

    async def discovery(self, _: Request) -> Response:
        return JSONResponse(
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "userinfo_endpoint": f"{self.issuer}/userinfo",
                "jwks_uri": f"{self.issuer}/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["openid", "email", "profile"],
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "client_secret_basic",
                ],
                "code_challenge_methods_supported": ["S256"],
            }
        )

    async def authorize(self, request: Request) -> Response:
        q = request.query_params
        if q.get("client_id") != CLIENT_ID or q.get("response_type") != "code":
            return JSONResponse({"error": "unauthorized_client"}, status_code=400)
        if "openid" not in (q.get("scope") or "").split():
            return JSONResponse({"error": "invalid_scope"}, status_code=400)
        redirect_uri = q["redirect_uri"]
        code = secrets.token_urlsafe(16)
        self.grants[code] = Grant(
            client_id=CLIENT_ID,
            redirect_uri=redirect_uri,
            nonce=q.get("nonce"),
            code_challenge=q.get("code_challenge"),
            claims=dict(self.who),
        )
        back = {"code": code, "state": q.get("state", ""), "iss": self.issuer}
        return RedirectResponse(f"{redirect_uri}?{urlencode(back)}", status_code=302)

    def _client_ok(self, request: Request, form: dict[str, str]) -> bool:
        header = request.headers.get("authorization", "")
        if header.lower().startswith("basic "):
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            return user == CLIENT_ID and password == CLIENT_SECRET
        return form.get("client_id") == CLIENT_ID and form.get("client_secret") == CLIENT_SECRET

    async def token(self, request: Request) -> Response:
        self.token_requests += 1
        # application/x-www-form-urlencoded, parsed by hand (no multipart dependency needed).
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        if not self._client_ok(request, form):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        grant = self.grants.pop(str(form.get("code")), None)  # codes work once
        if grant is None or form.get("redirect_uri") != grant.redirect_uri:
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        if grant.code_challenge is not None:
            verifier = str(form.get("code_verifier") or "").encode()
            digest = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=")
            if digest.decode() != grant.code_challenge:
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 300,
            **grant.claims,
        }
        if grant.nonce is not None:
            claims["nonce"] = grant.nonce
        id_token = jwt.encode({"alg": "RS256", "kid": "test-key-1"}, claims, self.key)
        access_token = secrets.token_urlsafe(24)
        self.tokens[access_token] = grant.claims
        return JSONResponse(
            {
                "access_token": access_token,
                "token_type": "Bearer",
                "expires_in": 300,
                "scope": "openid email profile",
                "id_token": id_token,
            },
            headers={"cache-control": "no-store"},
        )

    async def jwks(self, _: Request) -> Response:
        return JSONResponse({"keys": [self.key.as_dict(private=False)]})

    async def userinfo(self, request: Request) -> Response:
        token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        claims = self.tokens.get(token)
        if claims is None:
            return JSONResponse({"error": "invalid_token"}, status_code=401)
        return JSONResponse(claims)


@pytest.fixture
def provider() -> Iterator[Provider]:
    port = free_port()
    idp = Provider(issuer=f"http://127.0.0.1:{port}")
    server = uvicorn.Server(
        uvicorn.Config(
            idp.app(),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            ws="none",
            lifespan="off",
            access_log=False,
        )
    )
    thread = threading.Thread(target=server.run, name="oidc-provider", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "provider did not start"
        time.sleep(0.02)
    try:
        yield idp
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
async def oidc_auth(provider: Provider, pg_url: str, tmp_root: Path) -> AsyncIterator[AuthService]:
    """A second auth service with generic OIDC on, on a database of its own."""
    name = f"polaris_oidc_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(libpq_url(pg_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    database_url = f"{libpq_url(pg_url).rpartition('/')[0]}/{name}"
    extra = {
        "POLARIS_OIDC_ISSUER": provider.issuer,
        "POLARIS_OIDC_CLIENT_ID": CLIENT_ID,
        "POLARIS_OIDC_CLIENT_SECRET": CLIENT_SECRET,
        "POLARIS_OIDC_PROVIDER_ID": PROVIDER_ID,
    }
    try:
        async with running_auth_service(
            database_url, tmp_root / f"auth-oidc-{name}.log", extra
        ) as service:
            yield service
    finally:
        with psycopg.connect(libpq_url(pg_url), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def sign_in_with_oidc(browser: httpx.AsyncClient, auth: AuthService) -> httpx.Response:
    """Start sign-in at the auth service, pass the provider, come back: the final answer."""
    started = await browser.post(
        f"{auth.base_url}/api/auth/sign-in/social",
        json={"provider": PROVIDER_ID, "callbackURL": f"{auth.base_url}/"},
    )
    assert started.status_code == 200, started.text
    authorize_url = started.json()["url"]
    query = parse_qs(urlsplit(authorize_url).query)
    assert query["client_id"] == [CLIENT_ID] and query["code_challenge_method"] == ["S256"]
    assert "nonce" in query, "the id_token is bound to the request by a nonce"

    at_provider = await browser.get(authorize_url)
    assert at_provider.status_code == 302, at_provider.text
    callback = at_provider.headers["location"]
    assert callback.startswith(f"{auth.base_url}/api/auth/callback/{PROVIDER_ID}?")
    return await browser.get(callback)


async def test_operator_signs_in_through_the_oidc_provider(
    provider: Provider, oidc_auth: AuthService
) -> None:
    email = f"ops-{uuid.uuid4().hex[:8]}@corp.example"
    operator = await ensure_user(oidc_auth, email, role="admin")  # provisioned beforehand
    provider.who = {
        "sub": f"corp-{uuid.uuid4().hex[:6]}",
        "email": email,
        "email_verified": True,
        "name": "Olga Operator",
    }
    async with httpx.AsyncClient(timeout=10) as browser:
        back = await sign_in_with_oidc(browser, oidc_auth)
        assert back.status_code == 302, back.text
        assert back.headers["location"] == f"{oidc_auth.base_url}/"
        assert provider.token_requests == 1

        # A BetterAuth session for the pre-provisioned operator (cookie), and a JWT for the API.
        session = await browser.get(f"{oidc_auth.base_url}/api/auth/get-session")
        assert session.status_code == 200 and session.json() is not None, session.text
        user = session.json()["user"]
        assert (user["id"], user["email"], user["role"]) == (operator["id"], email, "admin")
        token = await browser.get(f"{oidc_auth.base_url}/api/auth/token")
        assert token.status_code == 200, token.text
        verifier = JwtVerifier.for_auth_service(oidc_auth.base_url)
        try:
            claims = await verifier.verify(token.json()["token"])
        finally:
            await verifier.aclose()
        assert (claims.sub, claims.role) == (operator["id"], "admin")

    # Signing in again finds the linked account (no second user, same id).
    async with httpx.AsyncClient(timeout=10) as browser:
        again = await sign_in_with_oidc(browser, oidc_auth)
        assert again.status_code == 302
        session = await browser.get(f"{oidc_auth.base_url}/api/auth/get-session")
        assert session.json()["user"]["id"] == operator["id"]


async def test_no_self_sign_up_through_oidc(provider: Provider, oidc_auth: AuthService) -> None:
    stranger = f"stranger-{uuid.uuid4().hex[:8]}@corp.example"
    provider.who = {"sub": "corp-x", "email": stranger, "email_verified": True, "name": "X"}
    async with httpx.AsyncClient(timeout=10) as browser:
        back = await sign_in_with_oidc(browser, oidc_auth)
        assert back.status_code == 302
        assert back.headers["location"].endswith("/api/auth/error?error=signup_disabled")
        session = await browser.get(f"{oidc_auth.base_url}/api/auth/get-session")
        assert session.status_code == 200 and session.json() is None
    async with httpx.AsyncClient(base_url=oidc_auth.internal_url, timeout=10) as client:
        listed = await client.get(
            f"/internal/users?search={stranger}", headers=oidc_auth.internal_headers()
        )
    assert listed.status_code == 200, listed.text
    assert stranger not in listed.text
