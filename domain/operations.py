"""Remote operations on chargers, protocol-neutral: what an operator asks a charger to do, the
life of that request, and the rules that keep secrets out of the operations log.

An operation is an action named as in the protocol (OCPP 1.6: ``Reset``, ``ChangeConfiguration``
…) with its fields named as in the protocol (``type``, ``key``, ``connectorId`` …). A protocol
adapter (``gateway/ocpp16_operations.py`` for OCPP 1.6) validates those fields against the
protocol's schema and turns them into a frame; nothing here knows about frames or sockets.

The status of an operation (the ``charger_operations`` row)::

    requested ──> sent ──> answered          the charger's answer accepted the request
        │           ├────> rejected          the charger answered with a refusing status
        │           ├────> failed            CallError from the charger, or a gateway error
        │           ├────> timed_out         no answer within the operation's timeout
        │           └────> charger_offline   the connection dropped before the answer
        ├──> charger_offline                 not connected (nothing was sent)
        └──> failed                          refused by the gateway before sending

"rejected" versus "answered": an answer without a ``status`` field (GetConfiguration,
GetLocalListVersion, UpdateFirmware, GetDiagnostics) is ``answered``; an answer whose status is
in :data:`ACCEPTING_STATUSES` (``Accepted``, and the accepting variants ``Unlocked``,
``Scheduled``, ``RebootRequired``) is ``answered``; any other status (``Rejected``,
``NotSupported``, ``UnlockFailed``, ``VersionMismatch``, ``Unknown``, ``Occupied`` …) is
``rejected``. A CallError (``NotImplemented``, ``NotSupported`` as an error code …) is ``failed``.

This module is pure: stdlib only, no I/O (``@file.json`` field values are read through a
callable the caller passes in).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, get_args

# Every message a central system sends to a charge point in OCPP 1.6 (core and the feature
# profiles Firmware Management, Local Auth List Management, Reservation, Smart Charging, Remote
# Trigger). The issue's prose counts 18; the list it gives names these 19.
CENTRAL_SYSTEM_ACTIONS: tuple[str, ...] = (
    "RemoteStartTransaction",
    "RemoteStopTransaction",
    "Reset",
    "UnlockConnector",
    "ChangeAvailability",
    "GetConfiguration",
    "ChangeConfiguration",
    "ClearCache",
    "TriggerMessage",
    "DataTransfer",
    "GetLocalListVersion",
    "SendLocalList",
    "ReserveNow",
    "CancelReservation",
    "SetChargingProfile",
    "ClearChargingProfile",
    "GetCompositeSchedule",
    "UpdateFirmware",
    "GetDiagnostics",
)

# Operations that exist only in OCPP 2.0.1 (sent to 2.0.1 connections as they are; the 1.6 names
# above are translated per connection by gateway/ocpp201_operations.py).
OCPP201_ONLY_ACTIONS: tuple[str, ...] = (
    "RequestStartTransaction",
    "RequestStopTransaction",
    "GetTransactionStatus",
    "GetVariables",
    "SetVariables",
    "GetBaseReport",
)
# Every operation an operator may name, whichever protocol the charger speaks.
OPERATION_ACTIONS: tuple[str, ...] = CENTRAL_SYSTEM_ACTIONS + OCPP201_ONLY_ACTIONS

# Sending one of these twice may do the thing twice (a second reboot, a second session, a second
# firmware install, a vendor message with unknown effect). A retry that finds such an operation
# already sent without an answer does not send it again: the operation ends ``failed``
# ("sent, outcome unknown, not resent"). Every other action is safe to repeat.
NON_IDEMPOTENT_ACTIONS = frozenset(
    {"RemoteStartTransaction", "Reset", "UpdateFirmware", "DataTransfer", "RequestStartTransaction"}
)

OperationStatus = Literal[
    "requested", "sent", "answered", "rejected", "failed", "timed_out", "charger_offline"
]
OPERATION_STATUSES: tuple[str, ...] = get_args(OperationStatus)
FINAL_STATUSES = frozenset({"answered", "rejected", "failed", "timed_out", "charger_offline"})

TRANSITIONS: Mapping[str, frozenset[str]] = {
    "requested": frozenset({"sent", "charger_offline", "failed"}),
    "sent": frozenset({"answered", "rejected", "failed", "timed_out", "charger_offline"}),
}

# Answer statuses that mean "the charger does (or will do) what was asked".
ACCEPTING_STATUSES = frozenset({"Accepted", "Unlocked", "Scheduled", "RebootRequired"})

# ChangeConfiguration keys whose value is a secret (the charger's HTTP Basic password).
SECRET_CONFIGURATION_KEYS = frozenset({"authorizationkey"})
# OCPP 2.0.1 device-model variables whose value is a secret (SetVariables).
SECRET_VARIABLES = frozenset({"basicauthpassword"})
REDACTED = "***"


class OperationTransitionError(ValueError):
    """A status change the state machine does not allow."""


def can_advance(current: str, new: str) -> bool:
    return new in TRANSITIONS.get(current, frozenset())


def advance(current: str, new: str) -> str:
    if not can_advance(current, new):
        raise OperationTransitionError(f"an operation cannot go from {current} to {new}")
    return new


def outcome_of_answer(answer: Mapping[str, Any]) -> Literal["answered", "rejected"]:
    """``answered`` or ``rejected`` for the charger's answer payload (see the module doc)."""
    status = answer.get("status")
    if status is None or status in ACCEPTING_STATUSES:
        return "answered"
    return "rejected"


# -- secrets ----------------------------------------------------------------------------------


def is_secret_key(key: object) -> bool:
    return isinstance(key, str) and key.lower() in SECRET_CONFIGURATION_KEYS


def split_secrets(action: str, fields: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The fields with every secret value replaced by ``***``, and the secrets by field name.

    Only ``ChangeConfiguration`` of a secret key carries one today (its ``value``).
    """
    redacted = dict(fields)
    secrets: dict[str, Any] = {}
    if (
        action == "ChangeConfiguration"
        and is_secret_key(fields.get("key"))
        and fields.get("value", REDACTED) != REDACTED
    ):
        secrets["value"] = fields["value"]
        redacted["value"] = REDACTED
    entries = fields.get("setVariableData")
    if action == "SetVariables" and isinstance(entries, list):
        hidden = [{**e, "attributeValue": REDACTED} if _secret_variable(e) else e for e in entries]
        if hidden != entries:
            # The whole list is the secret (merged back as one field).
            secrets["setVariableData"] = entries
            redacted["setVariableData"] = hidden
    return redacted, secrets


def _secret_variable(entry: object) -> bool:
    if not isinstance(entry, dict):
        return False
    variable = entry.get("variable")
    name = variable.get("name") if isinstance(variable, dict) else None
    return (
        isinstance(name, str)
        and name.lower() in SECRET_VARIABLES
        and entry.get("attributeValue", REDACTED) != REDACTED
    )


def redact_request(action: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    return split_secrets(action, fields)[0]


def merge_secrets(fields: Mapping[str, Any], secrets: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(fields)
    merged.update(secrets)
    return merged


def has_redacted_secret(action: str, fields: Mapping[str, Any]) -> bool:
    """The fields still hold ``***`` where a secret belongs (its value was never supplied)."""
    if action == "SetVariables" and isinstance(fields.get("setVariableData"), list):
        return any(
            isinstance(e, dict)
            and isinstance(e.get("variable"), dict)
            and str(e["variable"].get("name", "")).lower() in SECRET_VARIABLES
            and e.get("attributeValue") == REDACTED
            for e in fields["setVariableData"]
        )
    return (
        action == "ChangeConfiguration"
        and is_secret_key(fields.get("key"))
        and fields.get("value") == REDACTED
    )


def redact_answer(action: str, answer: Mapping[str, Any]) -> dict[str, Any]:
    """A GetConfiguration answer with secret keys' values hidden (chargers should never report
    AuthorizationKey, some do)."""
    if action != "GetConfiguration":
        return dict(answer)
    redacted = dict(answer)
    entries = answer.get("configurationKey")
    if isinstance(entries, list):
        redacted["configurationKey"] = [
            {**e, "value": REDACTED}
            if isinstance(e, dict) and is_secret_key(e.get("key")) and "value" in e
            else e
            for e in entries
        ]
    return redacted


# -- configuration --------------------------------------------------------------------------


def configuration_map(entries: object) -> dict[str, dict[str, Any]]:
    """GetConfiguration's ``configurationKey`` list as ``{key: {value, readonly}}``."""
    result: dict[str, dict[str, Any]] = {}
    if isinstance(entries, list):
        for entry in entries:
            if isinstance(entry, dict) and isinstance(entry.get("key"), str):
                result[entry["key"]] = {
                    "value": entry.get("value"),
                    "readonly": bool(entry.get("readonly", False)),
                }
    return result


def configuration_changes(
    previous: Mapping[str, Mapping[str, Any]] | None,
    current: Mapping[str, Mapping[str, Any]],
    *,
    current_is_full: bool,
) -> list[dict[str, Any]]:
    """What changed between two GetConfiguration answers, key by key (sorted).

    ``change`` is ``added`` / ``changed`` / ``removed``. A key is only ``removed`` when the
    current answer was a full read (no key list asked for): a partial read says nothing about
    the keys it did not ask for. With no previous answer nothing is a change.
    """
    if previous is None:
        return []
    changes: list[dict[str, Any]] = []
    for key in sorted(set(previous) | set(current)):
        before, after = previous.get(key), current.get(key)
        if before is None and after is not None:
            changes.append({"key": key, "change": "added", "after": after.get("value")})
        elif after is None and before is not None:
            if current_is_full:
                changes.append({"key": key, "change": "removed", "before": before.get("value")})
        elif before is not None and after is not None and before.get("value") != after.get("value"):
            changes.append(
                {
                    "key": key,
                    "change": "changed",
                    "before": before.get("value"),
                    "after": after.get("value"),
                }
            )
    return changes


# -- CLI fields: key=value with types from the protocol's JSON schema ---------------------


class FieldParseError(ValueError):
    """A ``key=value`` argument that cannot be read; ``issues`` in the service layer's form."""

    def __init__(self, issues: list[dict[str, Any]]) -> None:
        super().__init__(
            "; ".join(f"{'.'.join(map(str, i['path']))}: {i['message']}" for i in issues)
        )
        self.issues = issues


_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


def parse_fields(
    items: Sequence[str],
    schema: Mapping[str, Any],
    *,
    read_file: Callable[[str], str] | None = None,
) -> dict[str, Any]:
    """``["type=Soft", "connectorId=1"]`` → ``{"type": "Soft", "connectorId": 1}``.

    The request's JSON schema decides each value's type: ``integer`` and ``number`` are parsed as
    numbers, ``boolean`` as true/false (yes/no, 1/0), ``string`` is kept as written; ``object``
    and ``array`` take a JSON literal or ``@file.json`` (read with ``read_file``). An array of
    scalars also takes a comma-separated list (``key=HeartbeatInterval,MeterValueSampleInterval``)
    and grows when the field is repeated. A dotted name sets a field inside an object
    (``chargingSchedule.duration=60``). Types are only a convenience: the adapter validates the
    whole request against the schema afterwards.
    """
    fields: dict[str, Any] = {}
    issues: list[dict[str, Any]] = []
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or not name:
            issues.append({"path": [item], "message": "expected field=value"})
            continue
        path = name.split(".")
        try:
            node_schema = _schema_at(schema, path)
            value = _coerce(raw, node_schema, read_file)
            _assign(fields, path, value, node_schema)
        except ValueError as exc:
            issues.append({"path": path, "message": str(exc)})
    if issues:
        raise FieldParseError(issues)
    return fields


def _schema_at(schema: Mapping[str, Any], path: Sequence[str]) -> Mapping[str, Any]:
    node: Mapping[str, Any] = schema
    for part in path:
        props = node.get("properties")
        if node.get("type") == "array" and isinstance(node.get("items"), Mapping):
            raise ValueError("a field inside a list: give the whole list as JSON")
        if not isinstance(props, Mapping) or part not in props:
            known = ", ".join(sorted(props)) if isinstance(props, Mapping) else "none"
            raise ValueError(f"unknown field {part!r} (fields: {known})")
        node = props[part]
    return node


def _coerce(raw: str, schema: Mapping[str, Any], read_file: Callable[[str], str] | None) -> Any:
    kind = schema.get("type")
    if raw.startswith("@") and kind in ("object", "array"):
        if read_file is None:
            raise ValueError("@file values are not available here")
        try:
            raw = read_file(raw[1:])
        except OSError as exc:
            raise ValueError(f"cannot read {raw[1:]}: {exc.strerror or exc}") from None
    if kind == "integer":
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"{raw!r} is not an integer") from None
    if kind == "number":
        try:
            number = float(raw)
        except ValueError:
            raise ValueError(f"{raw!r} is not a number") from None
        return int(number) if number.is_integer() and "." not in raw else number
    if kind == "boolean":
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise ValueError(f"{raw!r} is not true or false")
    if kind in ("object", "array"):
        stripped = raw.strip()
        if stripped[:1] in ("{", "["):
            try:
                return json.loads(stripped)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not valid JSON: {exc.msg}") from None
        items = schema.get("items")
        if kind == "array" and isinstance(items, Mapping) and items.get("type") != "object":
            return [_coerce(part, items, None) for part in stripped.split(",") if part]
        raise ValueError(f"expected a JSON {kind} or @file.json")
    return raw


def _assign(
    fields: dict[str, Any], path: Sequence[str], value: Any, schema: Mapping[str, Any]
) -> None:
    node = fields
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ValueError(f"{part} is already set to a value")
        node = child
    last = path[-1]
    if (
        schema.get("type") == "array"
        and isinstance(node.get(last), list)
        and isinstance(value, list)
    ):
        node[last] = [*node[last], *value]
    elif last in node:
        raise ValueError("given twice")
    else:
        node[last] = value
