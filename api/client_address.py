"""The caller's address: the one function every rate limit, audit row and route asks.

The socket peer is the client, unless that peer is one of the operator's reverse proxies
(``POLARIS_API_TRUSTED_PROXIES``, CIDRs; none by default). Only then is ``X-Forwarded-For`` read,
right to left: each proxy appends the address it saw, so the rightmost entries are the trusted
chain and the first address that is *not* a trusted proxy is the client. Everything to the left
of it was written by the client and is ignored. A header from any other peer is ignored whole,
so a rotating ``X-Forwarded-For`` neither escapes a rate limit nor forges an audit source.

Only ``X-Forwarded-For`` is read (not ``Forwarded`` or ``X-Real-IP``): configure the proxy to set
it. uvicorn's own proxy-header handling is off (api/main.py), so ``request.client`` is the peer.
"""

from __future__ import annotations

from fastapi import Request

from config.settings import Settings
from domain.addresses import forwarded_client


def client_address(request: Request, settings: Settings) -> str | None:
    """The client's address as text, or ``None`` when the transport gives no peer."""
    if request.client is None:
        return None
    return forwarded_client(
        request.client.host,
        request.headers.getlist("x-forwarded-for"),
        settings.api_trusted_proxies,
    )


def request_client_address(request: Request) -> str | None:
    """:func:`client_address` with the settings of the app serving ``request``."""
    settings: Settings = request.app.state.polaris.settings
    return client_address(request, settings)


__all__ = ["client_address", "request_client_address"]
