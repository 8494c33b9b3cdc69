"""The JSON schema (draft 2020-12) of every webhook: the envelope, and each event type's ``data``.

``docs/webhooks.md`` prints them; the tests validate every delivered body against
:func:`schema_for`. ``data`` objects may gain fields (``additionalProperties`` is allowed, so a
receiver must ignore what it does not know); the fields listed as required are always there.
Ids only, never an idTag (a card is named by its fingerprint ``tag#…``) and never a secret.
"""

from __future__ import annotations

from typing import Any, Final

from domain import events as ev

STRING: Final = {"type": "string"}
INTEGER: Final = {"type": "integer"}
NUMBER: Final = {"type": "number"}
TIME: Final = {"type": "string", "format": "date-time"}
NULLABLE_STRING: Final = {"type": ["string", "null"]}
NULLABLE_INTEGER: Final = {"type": ["integer", "null"]}
NULLABLE_TIME: Final = {"type": ["string", "null"], "format": "date-time"}


def _object(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "required": sorted(required),
        "properties": {**required, **(optional or {})},
        "additionalProperties": True,
    }


_SESSION = {"session_id": STRING, "charge_box_id": STRING}
_SESSION_MORE = {
    "connector_id": NULLABLE_INTEGER,
    "transaction_id": NULLABLE_INTEGER,
    "user_id": NULLABLE_STRING,
    "state": STRING,
    "energy_wh": NULLABLE_INTEGER,
    "power_w": NULLABLE_INTEGER,
    "started_at": NULLABLE_TIME,
    "stopped_at": NULLABLE_TIME,
    "stop_reason": NULLABLE_STRING,
    "amount_minor": NULLABLE_INTEGER,
    "currency": NULLABLE_STRING,
}
_RESERVATION = {"reservation_id": STRING, "charge_box_id": STRING}
_RESERVATION_MORE = {
    "connector_id": NULLABLE_INTEGER,
    "user_id": NULLABLE_STRING,
    "status": STRING,
    "starts_at": TIME,
    "ends_at": TIME,
    "reason": NULLABLE_STRING,
    "session_id": NULLABLE_STRING,
}

DATA_SCHEMAS: Final[dict[str, dict[str, Any]]] = {
    ev.SESSION_STARTED: _object(_SESSION, _SESSION_MORE),
    ev.SESSION_UPDATED: _object(_SESSION, _SESSION_MORE),
    ev.SESSION_STOPPED: _object(_SESSION, _SESSION_MORE),
    ev.SESSION_BILLED: _object(_SESSION, _SESSION_MORE),
    ev.CHARGER_STATUS_CHANGED: _object(
        {"charge_box_id": STRING, "status": STRING},
        {
            "connector_id": INTEGER,
            "error_code": NULLABLE_STRING,
            "previous_status": NULLABLE_STRING,
        },
    ),
    ev.CHARGER_CONNECTED: _object({"charge_box_id": STRING}, {"gateway": NULLABLE_STRING}),
    ev.CHARGER_OFFLINE: _object({"charge_box_id": STRING}, {"last_seen_at": NULLABLE_TIME}),
    ev.CARD_LOST: _object(
        {"card_public_id": STRING, "user_id": STRING, "lost_at": TIME},
        # The idTag's fingerprint, when POLARIS_LOG_TAG_KEY is set (the same as in the logs).
        {"card": {"type": "string", "pattern": "^tag#[0-9a-f]+$"}},
    ),
    ev.RESERVATION_CREATED: _object(_RESERVATION, _RESERVATION_MORE),
    ev.RESERVATION_CONFIRMED: _object(_RESERVATION, _RESERVATION_MORE),
    ev.RESERVATION_CANCELLED: _object(_RESERVATION, _RESERVATION_MORE),
    ev.RESERVATION_FAILED: _object(_RESERVATION, _RESERVATION_MORE),
    ev.RESERVATION_EXPIRED: _object(_RESERVATION, _RESERVATION_MORE),
    ev.RESERVATION_USED: _object(_RESERVATION, _RESERVATION_MORE),
    ev.OPERATION_COMPLETED: _object(
        {"operation_id": STRING, "charge_box_id": STRING, "action": STRING, "status": STRING},
        {"requested_by": NULLABLE_STRING, "error": NULLABLE_STRING},
    ),
    ev.CAMPAIGN_PROGRESS: _object(
        {"campaign_id": STRING},
        {"status": STRING, "total": INTEGER, "installed": INTEGER, "failed": INTEGER},
    ),
    ev.SITE_LOAD_CHANGED: _object(
        {"site_id": INTEGER},
        {"limit_w": NULLABLE_INTEGER, "allocated_w": INTEGER, "sessions": INTEGER},
    ),
}

# An example ``data`` per type, for the documentation (and checked against the schemas).
EXAMPLES: Final[dict[str, dict[str, Any]]] = {
    ev.SESSION_STARTED: {
        "session_id": "session-CB-1-1-7f3a",
        "charge_box_id": "CB-1",
        "connector_id": 1,
        "transaction_id": 42,
        "user_id": "u_123",
        "state": "charging",
        "started_at": "2026-11-29T15:00:00Z",
    },
    ev.CARD_LOST: {
        "card_public_id": "7F3A21C0",
        "card": "tag#3f2a9c01d4e5",
        "user_id": "u_123",
        "lost_at": "2026-11-29T15:00:00Z",
    },
    ev.CHARGER_STATUS_CHANGED: {
        "charge_box_id": "CB-1",
        "connector_id": 1,
        "status": "Charging",
        "error_code": "NoError",
    },
    ev.OPERATION_COMPLETED: {
        "operation_id": "7c1e…",
        "charge_box_id": "CB-1",
        "action": "Reset",
        "status": "answered",
    },
}

ENVELOPE_SCHEMA: Final[dict[str, Any]] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["type", "id", "created_at", "data"],
    "properties": {
        "type": {"enum": sorted(ev.EVENT_TYPES)},
        "id": {"type": "string", "pattern": "^evt_[0-9]+$"},
        "created_at": TIME,
        "data": {"type": "object"},
    },
    "additionalProperties": False,
}


def schema_for(event_type: str) -> dict[str, Any]:
    """The whole body's schema for one event type (envelope with its ``data``)."""
    schema = dict(ENVELOPE_SCHEMA)
    schema["properties"] = {
        **ENVELOPE_SCHEMA["properties"],
        "type": {"const": event_type},
        "data": DATA_SCHEMAS[event_type],
    }
    return schema


__all__ = ["DATA_SCHEMAS", "ENVELOPE_SCHEMA", "EXAMPLES", "schema_for"]
