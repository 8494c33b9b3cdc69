"""The OCPP 2.0.1 frame check: every frame is checked here, with the CallError codes of OCPP-J
2.0.1 (Part 4, Table 8), before the ``ocpp`` library routes it.

The library drops frames it cannot unpack without an answer, swaps NotImplemented and
NotSupported, reports a missing property as ``ProtocolError`` (a 1.6 code), never checks
``date-time`` and parses numbers as floats. Here:

================================  ===========================================================
RpcFrameworkError                 not JSON, not an array, binary, wrong number of elements,
                                  MessageId not a string or longer than 36 (MessageId "-1"
                                  when it cannot be read), nesting deeper than MAX_JSON_DEPTH
MessageTypeNotSupported           MessageTypeId other than 2, 3 or 4
NotImplemented                    unknown action
NotSupported                      a 2.0.1 action we do not take from a charging station
FormatViolation                   payload not an object, unknown property, a date-time that
                                  does not parse
OccurrenceConstraintViolation     a required property is missing, a list too short or long
TypeConstraintViolation           wrong JSON type, string too long or short
PropertyConstraintViolation       value outside its enum or range
================================  ===========================================================

The payload is parsed once with ``Decimal`` numbers (:attr:`CheckedCall.payload`): meter values
are billed from it, never from the library's floats.
"""

from __future__ import annotations

import json
import re
from collections.abc import Container
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import ocpp.v201
from jsonschema import Draft4Validator, FormatChecker
from jsonschema.exceptions import best_match
from ocpp.exceptions import (
    FormatViolationError,
    NotSupportedError,
    OccurrenceConstraintViolationError,
    OCPPError,
    PropertyConstraintViolationError,
    TypeConstraintViolationError,
)
from ocpp.exceptions import NotImplementedError as OcppNotImplementedError
from ocpp.messages import CallError
from ocpp.v201.enums import Action

from gateway.frames import UnusableAnswer, answer_id

OCPP_VERSION = "2.0.1"
SCHEMAS = Path(ocpp.v201.__file__).parent / "schemas"
UNKNOWN_UID = "-1"
# NotifyReport and SetChargingProfile nest about 8 levels; anything far deeper is an attack.
MAX_JSON_DEPTH = 24
V201_ACTIONS = frozenset(a.value for a in Action)
_UID = re.compile(r'^\s*\[\s*2\s*,\s*"((?:[^"\\]|\\.){0,36})"')
_ANSWER_START = re.compile(r"^\s*\[\s*[34]\s*,")


class RpcFrameworkError(OCPPError):  # type: ignore[misc]
    """2.0.1: the frame is not a valid RPC message (not JSON, wrong shape, id unreadable)."""

    code = "RpcFrameworkError"
    default_description = "Payload is not a valid RPC request"


class MessageTypeNotSupportedError(OCPPError):  # type: ignore[misc]
    """2.0.1: a MessageTypeId the receiver does not know."""

    code = "MessageTypeNotSupported"
    default_description = "A message with a MessageTypeId not supported by the receiver"


# Every code a 2.0.1 peer may answer with (Part 4 Table 8).
CALL_ERROR_CODES = frozenset(
    {
        "FormatViolation",
        "GenericError",
        "InternalError",
        "MessageTypeNotSupported",
        "NotImplemented",
        "NotSupported",
        "OccurrenceConstraintViolation",
        "PropertyConstraintViolation",
        "ProtocolError",
        "RpcFrameworkError",
        "SecurityError",
        "TypeConstraintViolation",
    }
)


class FrameProblem(Exception):
    def __init__(self, unique_id: str, error: OCPPError) -> None:
        super().__init__(str(error))
        self.unique_id = unique_id
        self.error = error

    def call_error_json(self) -> str:
        text: str = CallError(
            self.unique_id, self.error.code, self.error.description, self.error.details
        ).to_json()
        return text


@dataclass(frozen=True, slots=True)
class CheckedCall:
    unique_id: str
    action: str
    # The request as sent, numbers as Decimal.
    payload: dict[str, Any]


_FORMATS = FormatChecker(formats=())


def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    return parsed is not None


_FORMATS.checks("date-time", raises=ValueError)(_is_date_time)


@cache
def _validator(action: str) -> Draft4Validator:
    # Read from the library's files, not through its validator cache: that cache is keyed
    # without parse_float, and the library validates our outgoing commands with float schemas.
    path = SCHEMAS / f"{action}Request.json"
    schema = json.loads(path.read_text(encoding="utf-8-sig"), parse_float=Decimal)
    return Draft4Validator(schema, format_checker=_FORMATS)


def _nested_deeper_than(value: object, limit: int) -> bool:
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = (
            list(node.values())
            if isinstance(node, dict)
            else node
            if isinstance(node, list)
            else None
        )
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def schema_error(action: str, payload: dict[str, Any]) -> OCPPError | None:
    error = best_match(_validator(action).iter_errors(payload))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "payload"
    details = {"cause": f"{where}: {error.message}"}
    kind = error.validator
    if kind in ("required", "minItems", "maxItems"):
        return OccurrenceConstraintViolationError(
            description="Payload for Action is syntactically correct but at least one of the "
            "fields violates occurrence constraints",
            details=details,
        )
    if kind in ("type", "maxLength", "minLength"):
        return TypeConstraintViolationError(details=details)
    if kind in ("additionalProperties", "format"):
        return FormatViolationError(details=details)
    return PropertyConstraintViolationError(details=details)


def _rpc(uid: str, cause: str) -> FrameProblem:
    return FrameProblem(uid, RpcFrameworkError(details={"cause": cause}))


def check_frame(raw: str | bytes, handled: Container[str]) -> str | CheckedCall:
    """One frame: the unique id of an answer (str), or the checked Call the library may route.

    Raises :class:`FrameProblem` (answer its CallError) or :class:`UnusableAnswer` (drop it).
    """
    if isinstance(raw, bytes):
        raise _rpc(UNKNOWN_UID, "OCPP-J frames are text, not binary")
    try:
        msg = json.loads(raw, parse_float=Decimal)
    except (ValueError, RecursionError):
        if _ANSWER_START.match(raw):
            raise UnusableAnswer("a CallResult / CallError that does not parse") from None
        found = _UID.match(raw)
        raise _rpc(found.group(1) if found else UNKNOWN_UID, "frame is not valid JSON") from None
    if not isinstance(msg, list) or not msg:
        raise _rpc(UNKNOWN_UID, "frame must be a non-empty JSON array")
    uid = msg[1] if len(msg) > 1 and isinstance(msg[1], str) and len(msg[1]) <= 36 else UNKNOWN_UID
    if _nested_deeper_than(msg, MAX_JSON_DEPTH):
        if msg[0] in (3, 4):
            raise UnusableAnswer(f"nests deeper than {MAX_JSON_DEPTH} levels")
        raise _rpc(uid, f"frame nests deeper than {MAX_JSON_DEPTH} levels")
    if msg[0] in (3, 4):
        return answer_id(msg)
    if msg[0] != 2:
        raise FrameProblem(
            uid,
            MessageTypeNotSupportedError(
                details={"cause": f"MessageTypeId {msg[0]!r} is not 2, 3 or 4"}
            ),
        )
    if len(msg) != 4:
        raise _rpc(uid, "a Call has exactly 4 elements")
    if not isinstance(msg[1], str) or len(msg[1]) > 36:
        raise _rpc(UNKNOWN_UID, "MessageId must be a string of at most 36 characters")
    if not isinstance(msg[2], str):
        raise _rpc(uid, "Action must be a string")
    action, payload = msg[2], msg[3]
    if action not in handled:
        if action in V201_ACTIONS:
            raise FrameProblem(
                uid,
                NotSupportedError(
                    description="Requested Action is recognized but not supported by the receiver",
                    details={"cause": f"{action} is not taken from a charging station"},
                ),
            )
        raise FrameProblem(
            uid,
            OcppNotImplementedError(
                description="Requested Action is not known by receiver",
                details={"cause": f"unknown action {action!r}"},
            ),
        )
    if not isinstance(payload, dict):
        raise FrameProblem(
            uid, FormatViolationError(details={"cause": "payload must be a JSON object"})
        )
    problem = schema_error(action, payload)
    if problem is not None:
        raise FrameProblem(uid, problem)
    return CheckedCall(uid, action, payload)
