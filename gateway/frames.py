"""Frame-level checks before the ``ocpp`` library routes a message, with the precise CallError.

The library drops frames it cannot unpack without answering, answers an unknown action with
NotSupported, and reports several schema violations as ``FormatViolation`` (an OCPP 2.0.1 code).
OCPP 1.6J wants, per its CallError table:

=============================  ==========================================================
FormationViolation             not JSON, not an array, payload not an object, unknown field
ProtocolError                  a required element or property is missing
TypeConstraintViolation        a field has the wrong type (or is longer than its CiString)
PropertyConstraintViolation    a field has a value outside its allowed set or range
OccurenceConstraintViolation   a list has fewer (or more) items than allowed (1.6 spells
                               the code with one "r")
NotImplemented                 the action is not known
NotSupported                   the action is known but not something a charger sends us
=============================  ==========================================================

Nesting deeper than :data:`MAX_JSON_DEPTH` is a FormationViolation too: no OCPP 1.6 message
comes close, and deeper structures would otherwise reach recursive code (the JSON decoder, the
library's key conversion) and end in ``RecursionError`` instead of an answer.

CallResults and CallErrors are never answered (OCPP-J forbids answering an answer):
:func:`check_frame` returns their unique id for the caller to match against its calls in flight,
and raises :class:`UnusableAnswer` for one too broken to match.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Container
from typing import Any

import fastjsonschema
from jsonschema.exceptions import best_match
from ocpp.exceptions import (
    FormationViolationError,
    NotSupportedError,
    OccurenceConstraintViolationError,
    OCPPError,
    PropertyConstraintViolationError,
    ProtocolError,
    TypeConstraintViolationError,
)
from ocpp.exceptions import (
    NotImplementedError as OcppNotImplementedError,
)
from ocpp.messages import CallError, get_validator
from ocpp.v16.enums import Action

_UID = re.compile(r'^\s*\[\s*2\s*,\s*"((?:[^"\\]|\\.){0,36})"')
_ANSWER_START = re.compile(r"^\s*\[\s*[34]\s*,")
_V16_ACTIONS = frozenset(a.value for a in Action)
# When the frame is too broken to carry a usable unique id.
UNKNOWN_UID = "-1"
# The deepest OCPP 1.6 message (MeterValues) nests 6 levels, the frame's array included.
MAX_JSON_DEPTH = 16


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


class UnusableAnswer(Exception):
    """A CallResult / CallError whose shape is wrong: it cannot be matched, and is dropped."""


def _nested_deeper_than(value: object, limit: int) -> bool:
    # Iterative on purpose (this is the guard against recursion), one nesting level at a time,
    # looking only at containers (it runs on every frame).
    level: list[Any] = [value] if isinstance(value, dict | list) else []
    depth = 1
    while level:
        if depth > limit:
            return True
        below: list[Any] = []
        for node in level:
            children = node.values() if isinstance(node, dict) else node
            below.extend(c for c in children if isinstance(c, dict | list))
        level = below
        depth += 1
    return False


def answer_id(msg: list[Any]) -> str:
    """The unique id of a well-formed CallResult ``[3, id, {}]`` or CallError
    ``[4, id, code, description, {}]`` (framed alike in OCPP 1.6 and 2.0.1)."""
    if msg[0] == 3:
        well_formed = len(msg) == 3 and isinstance(msg[2], dict)
    else:
        well_formed = (
            len(msg) == 5
            and isinstance(msg[2], str)
            and isinstance(msg[3], str)
            and isinstance(msg[4], dict)
        )
    if not (well_formed and isinstance(msg[1], str)):
        raise UnusableAnswer(f"MessageTypeId {msg[0]} frame has the wrong shape")
    return msg[1]


@functools.cache
def _fast_check(action: str) -> Callable[[Any], object]:
    """The action's request schema compiled to Python (fastjsonschema): a valid frame, nearly
    every frame, costs a fraction of walking the schema with ``jsonschema`` (which was the
    largest single cost of a MeterValues frame). Raises OSError/ValueError without a schema."""
    schema = get_validator(2, action, "1.6").schema
    check: Callable[[Any], object] = fastjsonschema.compile(schema, use_default=False)
    return check


def _schema_error(action: str, payload: dict[str, Any]) -> OCPPError | None:
    try:
        fast = _fast_check(action)
        validator = get_validator(2, action, "1.6")
    except (OSError, ValueError):
        return OcppNotImplementedError(details={"cause": f"no schema for {action}"})
    try:
        fast(payload)
        return None
    except fastjsonschema.JsonSchemaException:
        pass  # invalid: jsonschema names the precise error (the same schema, Draft 4)
    error = best_match(validator.iter_errors(payload))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "payload"
    details = {"cause": f"{where}: {error.message}"}
    kind = error.validator
    if kind == "required":
        return ProtocolError(details=details)
    if kind in ("type", "maxLength", "minLength"):
        return TypeConstraintViolationError(details=details)
    if kind == "additionalProperties":
        return FormationViolationError(details=details)
    if kind in ("minItems", "maxItems"):
        return OccurenceConstraintViolationError(details=details)
    return PropertyConstraintViolationError(details=details)


def check_frame(raw: str | bytes, handled: Container[str]) -> str | None:
    """Check one frame: ``None`` for a Call the library may route, the unique id of an answer.

    Raise :class:`FrameProblem` (to be answered with its CallError) for anything else that is
    not a usable answer, and :class:`UnusableAnswer` (to be dropped) for a broken answer.
    """
    if isinstance(raw, bytes):
        raise FrameProblem(
            UNKNOWN_UID,
            FormationViolationError(details={"cause": "OCPP-J frames are text, not binary"}),
        )
    try:
        msg = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        if _ANSWER_START.match(raw):
            raise UnusableAnswer("a CallResult / CallError that does not parse") from None
        found = _UID.match(raw)
        uid = found.group(1) if found else UNKNOWN_UID
        cause = (
            f"frame nests deeper than {MAX_JSON_DEPTH} levels"
            if isinstance(exc, RecursionError)
            else "frame is not valid JSON"
        )
        raise FrameProblem(uid, FormationViolationError(details={"cause": cause})) from None
    if not isinstance(msg, list) or not msg:
        raise FrameProblem(
            UNKNOWN_UID,
            FormationViolationError(details={"cause": "frame must be a non-empty JSON array"}),
        )
    uid = msg[1] if len(msg) > 1 and isinstance(msg[1], str) else UNKNOWN_UID
    if _nested_deeper_than(msg, MAX_JSON_DEPTH):
        problem = FormationViolationError(
            details={"cause": f"frame nests deeper than {MAX_JSON_DEPTH} levels"}
        )
        if msg[0] in (3, 4):
            raise UnusableAnswer(str(problem))
        raise FrameProblem(uid, problem)
    if msg[0] in (3, 4):
        return answer_id(msg)
    if msg[0] != 2:
        raise FrameProblem(
            uid,
            PropertyConstraintViolationError(
                details={"cause": f"MessageTypeId {msg[0]!r} is not 2, 3 or 4"}
            ),
        )
    if len(msg) != 4:
        raise FrameProblem(uid, ProtocolError(details={"cause": "a Call has exactly 4 elements"}))
    if not isinstance(msg[1], str) or not isinstance(msg[2], str):
        raise FrameProblem(
            uid, FormationViolationError(details={"cause": "UniqueId and Action must be strings"})
        )
    if len(msg[1]) > 36:
        raise FrameProblem(
            uid,
            PropertyConstraintViolationError(
                details={"cause": "UniqueId longer than 36 characters"}
            ),
        )
    action, payload = msg[2], msg[3]
    if action not in handled:
        if action in _V16_ACTIONS:
            raise FrameProblem(
                uid, NotSupportedError(details={"cause": f"{action} is not sent by a charge point"})
            )
        raise FrameProblem(
            uid, OcppNotImplementedError(details={"cause": f"unknown action {action!r}"})
        )
    if not isinstance(payload, dict):
        raise FrameProblem(
            uid, FormationViolationError(details={"cause": "payload must be a JSON object"})
        )
    schema_problem = _schema_error(action, payload)
    if schema_problem is not None:
        raise FrameProblem(uid, schema_problem)
    return None
