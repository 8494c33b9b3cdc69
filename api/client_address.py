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

from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

from fastapi import Request

from config.settings import Settings

Network = IPv4Network | IPv6Network
Address = IPv4Address | IPv6Address


def _parse(value: str) -> Address | None:
    try:
        return ip_address(value.strip())
    except ValueError:
        return None


def _trusted(address: Address, proxies: Sequence[Network]) -> bool:
    return any(address.version == net.version and address in net for net in proxies)


def client_address(request: Request, settings: Settings) -> str | None:
    """The client's address as text, or ``None`` when the transport gives no peer."""
    if request.client is None:
        return None
    peer_text = request.client.host
    peer = _parse(peer_text)
    proxies = settings.api_trusted_proxies
    if peer is None or not proxies or not _trusted(peer, proxies):
        return peer_text
    hops = [
        hop for header in request.headers.getlist("x-forwarded-for") for hop in header.split(",")
    ]
    nearest = peer
    for hop in reversed(hops):
        address = _parse(hop)
        if address is None:
            # Garbage where an address should be: the nearest trusted hop is all we know.
            break
        nearest = address
        if not _trusted(address, proxies):
            break
    return str(nearest)


def request_client_address(request: Request) -> str | None:
    """:func:`client_address` with the settings of the app serving ``request``."""
    settings: Settings = request.app.state.polaris.settings
    return client_address(request, settings)


__all__ = ["client_address", "request_client_address"]
