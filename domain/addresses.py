"""Who the client is: the socket peer, unless that peer is one of the operator's proxies.

The one rule behind every client address Polaris records or throttles on (the API's rate limits
and audit rows, the gateway's handshake throttle). Behind trusted proxies, ``X-Forwarded-For`` is
read from the right: each proxy appends the address it saw, so the rightmost entries are the
trusted chain and the first address that is *not* a trusted proxy is the client. Everything left
of it was written by the client and is never believed; from any other peer the header is ignored
whole, so a rotating ``X-Forwarded-For`` neither escapes a limit nor forges an audit source.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def in_networks(address: str, networks: Sequence[Network]) -> bool:
    """Whether ``address`` (text) lies in one of ``networks``; garbage lies in none."""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip.version == net.version and ip in net for net in networks)


def forwarded_client(
    peer: str | None, forwarded_for: Iterable[str], trusted: Sequence[Network]
) -> str | None:
    """The client's address given the socket ``peer``, the ``X-Forwarded-For`` header values and
    the ``trusted`` proxy networks (none: the peer, whatever the headers say)."""
    if peer is None or not in_networks(peer, trusted):
        return peer
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",")]
    current = peer
    for hop in reversed(hops):
        if not in_networks(current, trusted):
            break
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            break  # a proxy we trust wrote garbage: the last address we know is all we have
        current = hop
    return current


__all__ = ["Network", "forwarded_client", "in_networks"]
