"""The live charger sockets of this process, and how each one got in.

One connection per chargeBoxId. A reconnecting charger replaces its old socket (a charger that
lost power cannot close the old one), but only a connection that proved the charger's password
may replace one that did: :meth:`ChargerRegistry.may_replace` is asked twice, once during the
handshake (to answer 409) and again just before :meth:`ChargerRegistry.put`, because another
handshake for the same charger may have finished in between.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.charge_point import GatewayChargePoint


@dataclass(frozen=True)
class Admission:
    """How a connection was let in: decided in the handshake, kept with the socket."""

    authenticated: bool
    # The client address (the socket peer, or the forwarded one behind a trusted proxy).
    peer: str | None
    # Why an unauthenticated connection was let in: "allow_unauthenticated", "dev",
    # "auto_register"; None when authenticated.
    exemption: str | None = None


@dataclass(frozen=True)
class Live:
    cp: GatewayChargePoint
    admission: Admission


class ChargerRegistry:
    def __init__(self) -> None:
        self._by_id: dict[str, Live] = {}

    def get(self, charge_box_id: str) -> GatewayChargePoint | None:
        live = self._by_id.get(charge_box_id)
        return live.cp if live else None

    def admission(self, charge_box_id: str) -> Admission | None:
        live = self._by_id.get(charge_box_id)
        return live.admission if live else None

    def may_replace(self, charge_box_id: str, admission: Admission) -> bool:
        """False when an unauthenticated connection would displace an authenticated one."""
        current = self.admission(charge_box_id)
        return admission.authenticated or current is None or not current.authenticated

    def put(self, cp: GatewayChargePoint, admission: Admission) -> Live | None:
        """Register ``cp``; answers the connection it replaces (the caller closes it)."""
        old = self._by_id.get(cp.charge_box_id)
        self._by_id[cp.charge_box_id] = Live(cp, admission)
        return old

    def remove(self, cp: GatewayChargePoint) -> bool:
        live = self._by_id.get(cp.charge_box_id)
        if live is not None and live.cp is cp:
            del self._by_id[cp.charge_box_id]
            return True
        return False

    def __len__(self) -> int:
        return len(self._by_id)
