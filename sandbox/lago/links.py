"""Signed links for the sandbox's browser-facing pages: the customer portal and invoice PDFs.

Lago hands these out as capability URLs (a portal link carries a token, a PDF link is a signed
storage URL): whoever holds the link may open it, nobody can make one up. The API key cannot
protect them, because the driver's browser opens them. So the sandbox signs each link with
HMAC-SHA256 under a key derived from its API key; a request without a valid signature, or past
its expiry, is answered 404 like an unknown page (nothing tells a guesser which ids exist).

Portal links are minted per request and expire (Lago's do too); PDF links are stored with the
invoice and sent in webhooks, so they carry no expiry.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from urllib.parse import unquote, urlencode

PORTAL_TTL_S = 3600


class LinkSigner:
    def __init__(self, api_key: str, *, clock: Callable[[], float] = time.time) -> None:
        # A key of its own, so a signature never doubles as anything signed with the API key.
        self._key = hmac.new(api_key.encode(), b"polaris-sandbox-links", hashlib.sha256).digest()
        self._clock = clock

    def _mac(self, path: str, expires: str) -> str:
        # Over the decoded path: the server sees it decoded whatever quoting the link used.
        message = f"{unquote(path)}\n{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def sign(self, path: str, *, ttl_s: int | None = None) -> str:
        """``path`` with its signature (and expiry) as a query string."""
        expires = str(int(self._clock()) + ttl_s) if ttl_s is not None else ""
        query = {"signature": self._mac(path, expires)}
        if expires:
            query["expires"] = expires
        return f"{path}?{urlencode(query)}"

    def valid(self, path: str, query: Mapping[str, str]) -> bool:
        expires = query.get("expires", "")
        signature = query.get("signature", "")
        if expires and (not expires.isdigit() or int(expires) < self._clock()):
            return False
        expected = self._mac(path, expires)
        return hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace"))


__all__ = ["PORTAL_TTL_S", "LinkSigner"]
