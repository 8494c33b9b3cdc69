"""Which OCPP version a connection speaks: chosen per connection, in the CHARGER's order.

The charger lists the subprotocols it speaks in ``Sec-WebSocket-Protocol``, most preferred first
(OCPP-J 2.0.1 Part 4 §3.1). websockets would pick the first match in the *server's* list, so the
gateway passes :func:`select_subprotocol`. Nothing about the charger is remembered to choose: a
charger may come back with another version after a firmware update (``chargers.ocpp_version``
only shows the last one used). No common subprotocol: the handshake is refused with 400.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from websockets.typing import Subprotocol

OCPP16 = "ocpp1.6"
OCPP201 = "ocpp2.0.1"
SUPPORTED: tuple[str, ...] = (OCPP201, OCPP16)
VERSION_OF = {OCPP16: "1.6", OCPP201: "2.0.1"}


def choose(offered: Sequence[str]) -> str | None:
    """The first subprotocol in the charger's list that the gateway speaks."""
    for protocol in offered:
        if protocol.strip() in SUPPORTED:
            return protocol.strip()
    return None


def offered_in(headers: Sequence[str]) -> list[str]:
    """The charger's subprotocols, in its order, from every ``Sec-WebSocket-Protocol`` header."""
    return [p.strip() for h in headers for p in h.split(",") if p.strip()]


def select_subprotocol(connection: Any, subprotocols: Sequence[Subprotocol]) -> Subprotocol | None:
    """websockets' hook: the charger's preference wins."""
    chosen = choose(subprotocols)
    return Subprotocol(chosen) if chosen is not None else None
