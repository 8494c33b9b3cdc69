"""Verify the JWTs minted by the auth service (BetterAuth's ``jwt()`` plugin).

BetterAuth signs with EdDSA over Ed25519 by default (``alg: "EdDSA"``, an ``OKP`` key) and
publishes its public keys at ``<auth base URL>/api/auth/jwks``; issuer and audience both default to
the auth base URL. A token lives 15 minutes.

The verifier keeps the JWKS in memory for ``cache_ttl_s``. A token whose ``kid`` is not in the
cache triggers one refetch (the auth service rotated its key), at most once per
``min_refetch_interval_s`` so a flood of forged ``kid`` values cannot turn into a flood of JWKS
requests. One lock makes concurrent requests share a single fetch. When a refetch fails, the keys
already known are used until it succeeds.

Exceptions::

    AuthJwtError
     ├── InvalidToken       the token is refused (``reason`` says why); answer 401
     └── JwksUnavailable    no keys could be fetched at all; answer 503
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import httpx
from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwa import JWSAlgModel
from joserfc.jwk import import_key
from joserfc.jws import JWSRegistry

log = logging.getLogger(__name__)

# Asymmetric algorithms only: a JWKS must never be able to smuggle in a shared-secret key.
# "EdDSA" is BetterAuth's default; the others are what its keyPairConfig can be set to.
DEFAULT_ALGORITHMS: tuple[str, ...] = ("EdDSA", "Ed25519", "ES256", "ES512", "RS256", "PS256")

Reason = Literal[
    "malformed",
    "unsupported_algorithm",
    "unknown_key",
    "bad_signature",
    "expired",
    "not_yet_valid",
    "wrong_issuer",
    "wrong_audience",
    "missing_claim",
    "invalid_claim",
]


class AuthJwtError(Exception):
    """Base class of this module's errors."""


class InvalidToken(AuthJwtError):
    """The token is refused. ``reason`` is a short machine-readable code."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        self.reason: Reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class JwksUnavailable(AuthJwtError):
    """The JWKS could not be fetched and no keys are cached."""


@dataclass(frozen=True, slots=True)
class Claims:
    """The verified claims the API relies on; ``raw`` holds all of them (read-only)."""

    sub: str
    email: str | None
    role: str | None
    exp: int
    raw: Mapping[str, Any] = field(repr=False)


class _JwsRegistry(JWSRegistry):
    """Allows exactly the configured algorithms, without joserfc's warning on ``EdDSA``.

    RFC 9864 deprecates the *name* ``EdDSA`` in favour of ``Ed25519``; the signature scheme is
    the same, and BetterAuth (through ``jose``) still signs with that name.
    """

    def get_alg(self, name: str) -> JWSAlgModel:
        if not self.allowed or name not in self.allowed or name not in self.algorithms:
            raise InvalidToken("unsupported_algorithm", name)
        return self.algorithms[name]


def _b64url_json(segment: str) -> Any:
    padded = segment + "=" * (-len(segment) % 4)
    return json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))


def _header(token: str) -> dict[str, Any]:
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        raise InvalidToken("malformed", "not a compact JWS")
    try:
        header = _b64url_json(parts[0])
    except (ValueError, binascii.Error, UnicodeError) as exc:
        raise InvalidToken("malformed", "header is not base64url JSON") from exc
    if not isinstance(header, dict):
        raise InvalidToken("malformed", "header is not a JSON object")
    return header


_Key = Any  # joserfc's key union; kept opaque here


class JwtVerifier:
    """Verifies BetterAuth JWTs against the auth service's JWKS.

    One instance per process (it owns the key cache); ``aclose()`` when done if it created its
    own HTTP client.
    """

    def __init__(
        self,
        jwks_url: str,
        *,
        issuer: str,
        audience: str,
        http_client: httpx.AsyncClient | None = None,
        cache_ttl_s: float = 300.0,
        min_refetch_interval_s: float = 10.0,
        leeway_s: int = 0,
        algorithms: Collection[str] = DEFAULT_ALGORITHMS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.jwks_url = jwks_url
        self.issuer = issuer
        self.audience = audience
        self._client = http_client or httpx.AsyncClient(timeout=5.0)
        self._owns_client = http_client is None
        self._ttl_s = cache_ttl_s
        self._min_refetch_s = min_refetch_interval_s
        self._leeway_s = leeway_s
        self._algorithms = frozenset(algorithms)
        self._clock = clock
        self._keys: dict[str, tuple[str | None, _Key]] = {}
        self._fetched_at: float | None = None  # monotonic
        self._generation = 0
        self._lock = asyncio.Lock()
        self.fetch_count = 0  # for observability and tests

    @classmethod
    def for_auth_service(cls, base_url: str, **kwargs: Any) -> JwtVerifier:
        """A verifier with BetterAuth's defaults: JWKS under ``/api/auth``, iss = aud = base URL."""
        base = base_url.rstrip("/")
        return cls(f"{base}/api/auth/jwks", issuer=base, audience=base, **kwargs)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    # -- verification -------------------------------------------------------------------------

    async def verify(self, token: str) -> Claims:
        header = _header(token)
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise InvalidToken("unsupported_algorithm", repr(alg))
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("malformed", "token has no kid")

        key_alg, key = await self._key(kid)
        if key_alg is not None and key_alg != alg:
            raise InvalidToken(
                "unsupported_algorithm", f"key {kid} is for {key_alg}, token says {alg}"
            )

        try:
            decoded = jwt.decode(token, key, registry=_JwsRegistry(algorithms=[alg]))
        except BadSignatureError as exc:
            raise InvalidToken("bad_signature") from exc
        except JoseError as exc:
            raise InvalidToken("malformed", exc.error or type(exc).__name__) from exc
        except (ValueError, TypeError) as exc:
            raise InvalidToken("malformed", type(exc).__name__) from exc

        raw = decoded.claims
        self._validate_claims(raw)
        email = raw.get("email")
        role = raw.get("role")
        return Claims(
            sub=raw["sub"],
            email=email if isinstance(email, str) else None,
            role=role if isinstance(role, str) else None,
            exp=int(raw["exp"]),
            raw=MappingProxyType(dict(raw)),
        )

    def _validate_claims(self, raw: dict[str, Any]) -> None:
        registry = jwt.JWTClaimsRegistry(
            now=lambda: int(self._clock()),
            leeway=self._leeway_s,
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": self.audience},
            sub={"essential": True},
            exp={"essential": True},
        )
        try:
            registry.validate(raw)
        except ExpiredTokenError as exc:
            raise InvalidToken("expired") from exc
        except MissingClaimError as exc:
            raise InvalidToken("missing_claim", exc.claim) from exc
        except InvalidClaimError as exc:
            reason: Reason = {
                "iss": "wrong_issuer",
                "aud": "wrong_audience",
                "nbf": "not_yet_valid",
                "iat": "not_yet_valid",
            }.get(exc.claim, "invalid_claim")  # type: ignore[assignment]
            raise InvalidToken(reason, exc.claim) from exc

    # -- key cache ----------------------------------------------------------------------------

    async def _key(self, kid: str) -> tuple[str | None, _Key]:
        if self._stale():
            async with self._lock:
                if self._stale():
                    await self._fetch(keep_on_error=True)
        found = self._keys.get(kid)
        if found is not None:
            return found

        # Unknown kid: the key may have rotated since we fetched. Refetch once; callers that
        # queued behind the lock see the generation moved and reuse that fetch.
        seen = self._generation
        async with self._lock:
            if self._generation == seen and self._may_refetch():
                await self._fetch(keep_on_error=True)
        found = self._keys.get(kid)
        if found is None:
            raise InvalidToken("unknown_key", kid)
        return found

    def _stale(self) -> bool:
        return self._fetched_at is None or time.monotonic() - self._fetched_at >= self._ttl_s

    def _may_refetch(self) -> bool:
        return (
            self._fetched_at is None or time.monotonic() - self._fetched_at >= self._min_refetch_s
        )

    async def _fetch(self, *, keep_on_error: bool) -> None:
        self.fetch_count += 1
        try:
            response = await self._client.get(self.jwks_url, headers={"accept": "application/json"})
            response.raise_for_status()
            document = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            if keep_on_error and self._keys:
                log.warning(
                    "JWKS refetch from %s failed (%s); keeping cached keys", self.jwks_url, exc
                )
                # Do not hammer a failing auth service: count this as a fetch for the TTL clock.
                self._fetched_at = time.monotonic()
                return
            raise JwksUnavailable(f"cannot fetch JWKS from {self.jwks_url}: {exc}") from exc

        keys: dict[str, tuple[str | None, _Key]] = {}
        entries = document.get("keys") if isinstance(document, dict) else None
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
                continue
            if entry.get("kty") == "oct" or entry.get("use") not in (None, "sig"):
                continue
            try:
                key = import_key(entry)
            except (JoseError, ValueError, TypeError) as exc:
                log.warning("skipping unusable JWKS key %s: %s", entry.get("kid"), exc)
                continue
            alg = entry.get("alg")
            keys[entry["kid"]] = (alg if isinstance(alg, str) else None, key)
        if not keys and not self._keys:
            raise JwksUnavailable(f"JWKS at {self.jwks_url} has no usable signing keys")
        if keys:
            self._keys = keys
        self._fetched_at = time.monotonic()
        self._generation += 1
