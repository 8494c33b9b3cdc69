"""The OCPP 2.0.1 adapter for remote operations, beside ``gateway/ocpp16_operations.py``.

Workflows, the API and the CLI name operations as in OCPP 1.6 (``RemoteStartTransaction``,
``Reset`` …; their histories and operations log stay valid); a few operations exist only in
2.0.1 (:data:`OCPP201_ONLY_ACTIONS`: ``GetVariables``, ``SetVariables``, ``GetBaseReport``,
``GetTransactionStatus``, and ``RequestStart/StopTransaction`` under their own names). On a
2.0.1 connection the gateway translates the request here (:func:`translate_request`), sends it,
and translates the answer back into the shape the caller expects (:func:`translate_answer`).

The facts a translation needs from the database (the ``remoteStartId`` of the session's intent,
the charger's own transaction id, the card's token type) are looked up by the gateway and passed
in as :class:`Facts`: this module is pure and imports only the ``ocpp`` library's schemas.

================================  =============================================================
1.6 name (what callers send)      2.0.1 request
================================  =============================================================
RemoteStartTransaction            RequestStartTransaction {idToken{idToken, type}, remoteStartId,
                                  evseId = connectorId}
RemoteStopTransaction             RequestStopTransaction {transactionId = the charger's string}
Reset Hard / Soft                 Reset Immediate / OnIdle
UnlockConnector                   UnlockConnector {evseId = connectorId, connectorId 1}
ChangeAvailability                ChangeAvailability {operationalStatus, evse{id} unless 0}
TriggerMessage                    TriggerMessage {requestedMessage, evse{id}}
ChangeConfiguration key/value     SetVariables [{component, variable, attributeValue}]
GetConfiguration key[]            GetVariables [{component, variable}]
ClearCache, DataTransfer          the same
================================  =============================================================

Anything else (reservations, charging profiles, local lists, firmware, diagnostics) is not yet
translated: :class:`Untranslatable`, which the gateway reports as a clear ``BadCommand``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ocpp.messages import MessageType, get_validator

from domain.operations import OCPP201_ONLY_ACTIONS

PROTOCOL = "ocpp2.0.1"
OCPP_VERSION = "2.0.1"

# 1.6 names with a 2.0.1 translation (the same name when the message did not change).
TRANSLATED_ACTIONS: tuple[str, ...] = (
    "RemoteStartTransaction",
    "RemoteStopTransaction",
    "Reset",
    "UnlockConnector",
    "ChangeAvailability",
    "TriggerMessage",
    "ChangeConfiguration",
    "GetConfiguration",
    "ClearCache",
    "DataTransfer",
)

# 1.6 configuration keys onto 2.0.1 device-model variables (component, variable); the names are
# the library's enums (OCPPCommCtrlr, SampledDataCtrlr, AuthCtrlr, TxCtrlr, SecurityCtrlr …).
CONFIGURATION_VARIABLES: Mapping[str, tuple[str, str]] = {
    "heartbeatinterval": ("OCPPCommCtrlr", "HeartbeatInterval"),
    "websocketpinginterval": ("OCPPCommCtrlr", "WebSocketPingInterval"),
    "metervaluesampleinterval": ("SampledDataCtrlr", "TxUpdatedInterval"),
    "metervaluessampleddata": ("SampledDataCtrlr", "TxUpdatedMeasurands"),
    "stoptxnsampleddata": ("SampledDataCtrlr", "TxEndedMeasurands"),
    "clockaligneddatainterval": ("AlignedDataCtrlr", "Interval"),
    "authorizeremotetxrequests": ("AuthCtrlr", "AuthorizeRemoteStart"),
    "connectiontimeout": ("TxCtrlr", "EVConnectionTimeOut"),
    "stoptransactiononevsidedisconnect": ("TxCtrlr", "StopTxOnEVSideDisconnect"),
    "stoptransactiononinvalidid": ("TxCtrlr", "StopTxOnInvalidId"),
    # The charger's HTTP Basic password (security profile 1/2): password rotation.
    "authorizationkey": ("SecurityCtrlr", "BasicAuthPassword"),
}
RESET_TYPES: Mapping[str, str] = {"Hard": "Immediate", "Soft": "OnIdle"}
TRIGGERED_MESSAGES: Mapping[str, str] = {"DiagnosticsStatusNotification": "LogStatusNotification"}
# SetVariables attributeStatus onto a 1.6 ChangeConfiguration status.
CONFIGURATION_STATUS: Mapping[str, str] = {
    "Accepted": "Accepted",
    "Rejected": "Rejected",
    "RebootRequired": "RebootRequired",
    "UnknownComponent": "NotSupported",
    "UnknownVariable": "NotSupported",
    "NotSupportedAttributeType": "NotSupported",
}
DEFAULT_TOKEN_TYPE = "Central"


class Untranslatable(ValueError):
    """The operation has no 2.0.1 translation (yet), or its fields cannot be translated."""


@dataclass(frozen=True, slots=True)
class Facts:
    """What the gateway looked up for a translation."""

    # RemoteStart: the id of the session's remote-start intent (matched in TransactionEvent).
    remote_start_id: int | None = None
    # RemoteStart: the card's stored token type (None: an app-only id, sent as Central).
    token_type: str | None = None
    # RemoteStop: the charger's own transaction id for our integer transaction id.
    ocpp_transaction_id: str | None = None


def is_supported(action: str) -> bool:
    return action in OCPP201_ONLY_ACTIONS or action in TRANSLATED_ACTIONS


def _variable(key: object) -> tuple[str, str]:
    found = CONFIGURATION_VARIABLES.get(str(key).lower()) if isinstance(key, str) else None
    if found is None:
        raise Untranslatable(
            f"configuration key {key!r} has no OCPP 2.0.1 device-model variable here; "
            "use GetVariables / SetVariables"
        )
    return found


def _evse(connector_id: object) -> dict[str, Any] | None:
    return {"id": connector_id} if isinstance(connector_id, int) and connector_id > 0 else None


def translate_request(
    action: str, fields: Mapping[str, Any], facts: Facts = Facts()
) -> tuple[str, dict[str, Any]]:
    """The 2.0.1 action and payload for an operation named ``action`` with ``fields``."""
    if action in OCPP201_ONLY_ACTIONS:
        return action, dict(fields)
    match action:
        case "RemoteStartTransaction":
            if "chargingProfile" in fields:
                raise Untranslatable("a remote start's chargingProfile is not yet translated")
            if facts.remote_start_id is None:
                raise Untranslatable("no remoteStartId for this remote start")
            out: dict[str, Any] = {
                "idToken": {
                    "idToken": fields.get("idTag"),
                    "type": facts.token_type or DEFAULT_TOKEN_TYPE,
                },
                "remoteStartId": facts.remote_start_id,
            }
            if isinstance(fields.get("connectorId"), int):
                out["evseId"] = fields["connectorId"]
            return "RequestStartTransaction", out
        case "RemoteStopTransaction":
            if facts.ocpp_transaction_id is None:
                raise Untranslatable(
                    f"transaction {fields.get('transactionId')!r} is not an OCPP 2.0.1 "
                    "transaction of this charger"
                )
            return "RequestStopTransaction", {"transactionId": facts.ocpp_transaction_id}
        case "Reset":
            kind = RESET_TYPES.get(str(fields.get("type")))
            if kind is None:
                raise Untranslatable(f"Reset type {fields.get('type')!r} (Hard or Soft)")
            return "Reset", {"type": kind}
        case "UnlockConnector":
            return "UnlockConnector", {"evseId": fields.get("connectorId"), "connectorId": 1}
        case "ChangeAvailability":
            out = {"operationalStatus": fields.get("type")}
            evse = _evse(fields.get("connectorId"))
            if evse is not None:
                out["evse"] = evse
            return "ChangeAvailability", out
        case "TriggerMessage":
            requested = str(fields.get("requestedMessage"))
            out = {"requestedMessage": TRIGGERED_MESSAGES.get(requested, requested)}
            evse = _evse(fields.get("connectorId"))
            if evse is not None:
                if requested == "StatusNotification":
                    evse["connectorId"] = 1
                out["evse"] = evse
            return "TriggerMessage", out
        case "ChangeConfiguration":
            component, variable = _variable(fields.get("key"))
            return "SetVariables", {
                "setVariableData": [
                    {
                        "attributeValue": str(fields.get("value")),
                        "component": {"name": component},
                        "variable": {"name": variable},
                    }
                ]
            }
        case "GetConfiguration":
            keys = fields.get("key")
            if not keys:
                raise Untranslatable(
                    "GetConfiguration without keys: use GetBaseReport on an OCPP 2.0.1 charger"
                )
            return "GetVariables", {
                "getVariableData": [
                    {"component": {"name": c}, "variable": {"name": v}}
                    for c, v in (_variable(k) for k in keys)
                ]
            }
        case "ClearCache" | "DataTransfer":
            return action, dict(fields)
    raise Untranslatable(f"{action} is not yet supported on an OCPP 2.0.1 connection")


def translate_answer(
    action: str, fields: Mapping[str, Any], answer: Mapping[str, Any]
) -> dict[str, Any]:
    """The charger's 2.0.1 answer in the shape the caller of ``action`` expects."""
    if action == "ChangeConfiguration":
        results = answer.get("setVariableResult") or [{}]
        status = str(results[0].get("attributeStatus", "Rejected"))
        return {"status": CONFIGURATION_STATUS.get(status, "Rejected")}
    if action == "GetConfiguration":
        by_variable = {
            (str(r.get("component", {}).get("name")), str(r.get("variable", {}).get("name"))): r
            for r in answer.get("getVariableResult", [])
        }
        known: list[dict[str, Any]] = []
        unknown: list[str] = []
        for key in fields.get("key") or []:
            result = by_variable.get(_variable(key), {})
            if result.get("attributeStatus") == "Accepted":
                known.append({"key": key, "readonly": False, "value": result.get("attributeValue")})
            else:
                unknown.append(key)
        out: dict[str, Any] = {"configurationKey": known}
        if unknown:
            out["unknownKey"] = unknown
        return out
    return dict(answer)


def _validator(action: str) -> Any:
    if action not in OCPP201_ONLY_ACTIONS and action not in TRANSLATED_ACTIONS:
        raise Untranslatable(f"{action} is not yet supported on an OCPP 2.0.1 connection")
    return get_validator(MessageType.Call, action, OCPP_VERSION)


def request_schema(action: str) -> dict[str, Any]:
    """The JSON schema of a 2.0.1-only operation's request (for field parsing)."""
    if action not in OCPP201_ONLY_ACTIONS:
        raise Untranslatable(f"{action} is not an OCPP 2.0.1-only operation")
    schema: dict[str, Any] = _validator(action).schema
    return schema


def validate_request(action: str, fields: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Schema violations of a 2.0.1 request (``action`` is the 2.0.1 name)."""
    issues = []
    for error in sorted(
        _validator(action).iter_errors(dict(fields)), key=lambda e: list(e.absolute_path)
    ):
        path = [str(p) if isinstance(p, str) else p for p in error.absolute_path]
        issues.append({"path": path, "message": error.message})
    return issues


def build_frame(action: str, fields: Mapping[str, Any], unique_id: str) -> list[Any]:
    """The OCPP-J CALL: ``[2, "<unique id>", "<Action>", {payload}]``."""
    return [int(MessageType.Call), unique_id, action, dict(fields)]


__all__ = [
    "OCPP201_ONLY_ACTIONS",
    "OCPP_VERSION",
    "PROTOCOL",
    "TRANSLATED_ACTIONS",
    "Facts",
    "Untranslatable",
    "build_frame",
    "is_supported",
    "request_schema",
    "translate_answer",
    "translate_request",
    "validate_request",
]
