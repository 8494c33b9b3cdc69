"""What a driver sees of a connector: ``available | in_use | reserved | offline | faulted``.

Pure: the facts come in (the charger's last contact, the connector's OCPP status and those of
connector 0, an open transaction, a reservation now), one word comes out. The service layer
(``services/availability.py``) gathers the facts.

The rule, first match wins:

1. ``offline`` — the charger is not connected, or has not been seen for
   ``OFFLINE_AFTER_HEARTBEATS`` × the heartbeat interval the gateway gives chargers in its
   BootNotification answer (a gateway that died cannot mark its chargers disconnected; silence
   can). Also a connector (or connector 0) the charger reports ``Unavailable`` (taken out of
   service): not a fault, but nobody can charge there.
2. ``faulted`` — the connector (or connector 0, the charge point as a whole) reports
   ``Faulted``.
3. ``in_use`` — an open transaction on the connector, or a status that means a car is plugged in
   (Preparing, Charging, SuspendedEV, SuspendedEVSE, Finishing).
4. ``reserved`` — the charger reports ``Reserved``, or a reservation covers the connector now.
5. ``available`` — otherwise (``Available``, or a status the charger never reported).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal, get_args

Availability = Literal["available", "in_use", "reserved", "offline", "faulted"]
AVAILABILITIES: Final[tuple[Availability, ...]] = (
    "available",
    "in_use",
    "reserved",
    "offline",
    "faulted",
)

OFFLINE_AFTER_HEARTBEATS: Final = 3

# The plugs operators may record (``polaris chargers set --connector-type 1=CCS``).
ConnectorType = Literal["Type1", "Type2", "CCS1", "CCS2", "CHAdeMO", "Schuko", "NACS", "GBT"]
CONNECTOR_TYPES: Final[tuple[str, ...]] = get_args(ConnectorType)

IN_USE_STATUSES: Final = frozenset(
    {"Preparing", "Charging", "SuspendedEV", "SuspendedEVSE", "Finishing"}
)


@dataclass(frozen=True, slots=True)
class ConnectorFacts:
    connected: bool
    last_seen_at: datetime | None
    status: str | None  # the connector's last StatusNotification status
    charger_status: str | None = None  # connector 0's
    open_transaction: bool = False
    reserved_now: bool = False


def charger_offline(
    connected: bool, last_seen_at: datetime | None, now: datetime, heartbeat_interval_s: float
) -> bool:
    """Not connected, never seen, or silent for longer than 3 heartbeat intervals."""
    if not connected or last_seen_at is None:
        return True
    silence = timedelta(seconds=heartbeat_interval_s * OFFLINE_AFTER_HEARTBEATS)
    return now - last_seen_at > silence


def connector_state(
    facts: ConnectorFacts, now: datetime, heartbeat_interval_s: float
) -> Availability:
    """The one rule (see the module docstring)."""
    if charger_offline(facts.connected, facts.last_seen_at, now, heartbeat_interval_s):
        return "offline"
    statuses = {facts.status, facts.charger_status}
    if "Unavailable" in statuses:
        return "offline"
    if "Faulted" in statuses:
        return "faulted"
    if facts.open_transaction or facts.status in IN_USE_STATUSES:
        return "in_use"
    if facts.status == "Reserved" or facts.reserved_now:
        return "reserved"
    return "available"


__all__ = [
    "AVAILABILITIES",
    "CONNECTOR_TYPES",
    "IN_USE_STATUSES",
    "OFFLINE_AFTER_HEARTBEATS",
    "Availability",
    "ConnectorFacts",
    "ConnectorType",
    "charger_offline",
    "connector_state",
]
