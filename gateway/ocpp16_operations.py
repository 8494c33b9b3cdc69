"""The OCPP 1.6 adapter for remote operations: an operation's fields become an OCPP-J CALL frame,
validated against the OCPP 1.6 JSON schemas shipped with the ``ocpp`` library.

The API and the CLI validate (and dry-run) with this module before anything is requested, and the
gateway's ``send_charger_command`` sends what it describes. It imports only ``ocpp.messages``
(the schema files and jsonschema), never the WebSocket server: services import it without
pulling in the gateway process.

An OCPP 2.0.1 adapter would be a sibling module with the same three functions
(:func:`request_schema`, :func:`validate_request`, :func:`build_frame`).
"""

from __future__ import annotations

import decimal
import json
from collections.abc import Mapping
from typing import Any

from ocpp.messages import MessageType, get_validator

from domain.operations import CENTRAL_SYSTEM_ACTIONS

PROTOCOL = "ocpp1.6"
OCPP_VERSION = "1.6"

# The schemas of these requests hold decimals with a 0.1 precision (multipleOf): they are checked
# with Decimal numbers, as the ocpp library does, so 21.4 is not refused as 21.399999….
_DECIMAL_ACTIONS = frozenset({"SetChargingProfile", "RemoteStartTransaction"})


class UnknownAction(ValueError):
    """Not a message a central system sends in OCPP 1.6."""


def _validator(action: str) -> Any:
    """The library's cached jsonschema Draft 4 validator of the action's request."""
    if action not in CENTRAL_SYSTEM_ACTIONS:
        raise UnknownAction(
            f"{action!r} is not an OCPP 1.6 central-system action "
            f"(one of: {', '.join(CENTRAL_SYSTEM_ACTIONS)})"
        )
    parse_float = decimal.Decimal if action in _DECIMAL_ACTIONS else float
    return get_validator(MessageType.Call, action, OCPP_VERSION, parse_float=parse_float)


def request_schema(action: str) -> dict[str, Any]:
    """The JSON schema of the action's request (for field parsing and documentation)."""
    schema: dict[str, Any] = _validator(action).schema
    return schema


def validate_request(action: str, fields: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every schema violation of the request, as ``{"path": [...], "message": ...}`` (empty when
    the request is valid). Raises :class:`UnknownAction` for an action OCPP 1.6 does not have."""
    validator = _validator(action)
    payload: Any = dict(fields)
    if action in _DECIMAL_ACTIONS:
        payload = json.loads(json.dumps(payload), parse_float=decimal.Decimal)
    issues = []
    for error in sorted(validator.iter_errors(payload), key=lambda e: list(e.absolute_path)):
        path = [str(p) if isinstance(p, str) else p for p in error.absolute_path]
        if error.validator == "required" and isinstance(error.instance, dict):
            missing = [k for k in error.validator_value if k not in error.instance]
            path = [*path, *missing[:1]]
        issues.append({"path": path, "message": error.message})
    return issues


def build_frame(action: str, fields: Mapping[str, Any], unique_id: str) -> list[Any]:
    """The OCPP-J CALL: ``[2, "<unique id>", "<Action>", {payload}]``."""
    return [int(MessageType.Call), unique_id, action, dict(fields)]


__all__ = [
    "OCPP_VERSION",
    "PROTOCOL",
    "UnknownAction",
    "build_frame",
    "request_schema",
    "validate_request",
]
