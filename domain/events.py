"""The platform's event catalogue: what happened, named once for every consumer.

Events are recorded by whoever commits the change they describe (``db/events.py``), in the same
transaction, and consumed by the live streams (SSE), the outgoing webhooks and the inboxes. A type
is ``<noun>.<verb>``; its payload is a flat JSON object documented in ``docs/webhooks.md``.
"""

from __future__ import annotations

from typing import Final

SESSION_STARTED: Final = "session.started"
SESSION_UPDATED: Final = "session.updated"  # meter progress, state changes
SESSION_STOPPED: Final = "session.stopped"
SESSION_BILLED: Final = "session.billed"
CHARGER_STATUS_CHANGED: Final = "charger.status_changed"  # a connector's status or error code
CHARGER_CONNECTED: Final = "charger.connected"
CHARGER_OFFLINE: Final = "charger.offline"
CARD_LOST: Final = "card.lost"
RESERVATION_CREATED: Final = "reservation.created"
RESERVATION_CONFIRMED: Final = "reservation.confirmed"  # the charger accepted ReserveNow
RESERVATION_CANCELLED: Final = "reservation.cancelled"
RESERVATION_FAILED: Final = "reservation.failed"
RESERVATION_EXPIRED: Final = "reservation.expired"
RESERVATION_USED: Final = "reservation.used"  # joined to a session
OPERATION_COMPLETED: Final = "operation.completed"
CAMPAIGN_PROGRESS: Final = "firmware_campaign.progress"
SITE_LOAD_CHANGED: Final = "site.load_changed"

EVENT_TYPES: Final = frozenset(
    {
        SESSION_STARTED,
        SESSION_UPDATED,
        SESSION_STOPPED,
        SESSION_BILLED,
        CHARGER_STATUS_CHANGED,
        CHARGER_CONNECTED,
        CHARGER_OFFLINE,
        CARD_LOST,
        RESERVATION_CREATED,
        RESERVATION_CONFIRMED,
        RESERVATION_CANCELLED,
        RESERVATION_FAILED,
        RESERVATION_EXPIRED,
        RESERVATION_USED,
        OPERATION_COMPLETED,
        CAMPAIGN_PROGRESS,
        SITE_LOAD_CHANGED,
    }
)
