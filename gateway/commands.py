"""Commands to chargers: the ``send_charger_command`` activity on ``gateway-<instance>``.

The activity runs in the gateway process that holds the charger's socket and calls the charger
outside any message handler (a call from inside a handler would deadlock the connection).

Errors (``ApplicationError.type``)::

    ChargerOffline   no live socket for this charger in this process   (retryable)
    ChargerTimeout   the charger did not answer within timeout_s       (non-retryable)
    ChargerCallError the charger answered with a CallError, or the
                     request/answer broke the OCPP schema              (non-retryable)
    BadCommand       the payload does not fit the action               (non-retryable)
    InvalidCommandPayload  the request fails the ``ocpp`` library's      (non-retryable)
                     outgoing schema validation; the message names the
                     OCPP error class and its cause

Every error's details are plain JSON (the ``ocpp`` library's errors carry the offending message
object, which Temporal cannot serialise: the workflow would see a serialisation failure instead
of the reason).
"""

from __future__ import annotations

import asyncio
from typing import Any

from ocpp.charge_point import (
    camel_to_snake_case,
    remove_nones,
    serialize_as_dict,
    snake_to_camel_case,
)
from ocpp.exceptions import OCPPError
from ocpp.messages import Call, validate_payload
from ocpp.v16 import call
from temporalio import activity
from temporalio.exceptions import ApplicationError
from websockets.exceptions import ConnectionClosed

from gateway.registry import ChargerRegistry
from workflows.messages import (
    ACTIVITY_SEND_CHARGER_COMMAND,
    ChargerCommandInput,
    ChargerCommandResult,
)


class ChargerCommands:
    def __init__(self, registry: ChargerRegistry) -> None:
        self._registry = registry

    @activity.defn(name=ACTIVITY_SEND_CHARGER_COMMAND)
    async def send_charger_command(self, input: ChargerCommandInput) -> ChargerCommandResult:
        cp = self._registry.get(input.charge_box_id)
        if cp is None:
            raise ApplicationError(
                f"{input.charge_box_id} is not connected to this gateway", type="ChargerOffline"
            )
        request_cls = getattr(call, input.action, None)
        if request_cls is None:
            raise ApplicationError(
                f"unsupported action {input.action}", type="BadCommand", non_retryable=True
            )
        try:
            request = request_cls(**camel_to_snake_case(input.payload))
        except TypeError as exc:
            raise ApplicationError(
                f"payload does not fit {input.action}: {exc}", type="BadCommand", non_retryable=True
            ) from exc
        await _validate_outgoing(input, request)
        try:
            async with asyncio.timeout(input.timeout_s):
                answer = await cp.call(request, suppress=False)
        except TimeoutError as exc:
            raise ApplicationError(
                f"{input.charge_box_id} did not answer {input.action} within {input.timeout_s}s",
                type="ChargerTimeout",
                non_retryable=True,
            ) from exc
        except ConnectionClosed as exc:
            raise ApplicationError(
                f"{input.charge_box_id} disconnected during {input.action}", type="ChargerOffline"
            ) from exc
        except OCPPError as exc:
            raise ApplicationError(
                f"{input.action} failed: {exc.code}",
                {
                    "code": exc.code,
                    "description": exc.description,
                    "details": _plain(exc.details),
                },
                type="ChargerCallError",
                non_retryable=True,
            ) from exc
        payload: dict[str, Any] = snake_to_camel_case(remove_nones(serialize_as_dict(answer)))
        return ChargerCommandResult(payload=payload)


async def _validate_outgoing(input: ChargerCommandInput, request: Any) -> None:
    """The library's own outgoing validation, run first so its failure has a clear type."""
    payload = snake_to_camel_case(remove_nones(serialize_as_dict(request)))
    try:
        await validate_payload(Call("validate", input.action, payload), "1.6")
    except OCPPError as exc:
        cause = _plain(exc.details).get("cause") or exc.description
        raise ApplicationError(
            f"{type(exc).__name__}: {cause}",
            {"error": type(exc).__name__, "code": exc.code, "cause": str(cause)},
            type="InvalidCommandPayload",
            non_retryable=True,
        ) from None


def _plain(details: object) -> dict[str, str]:
    """OCPP error details as strings only (they may hold the library's message objects)."""
    if not isinstance(details, dict):
        return {}
    return {str(k): v if isinstance(v, str) else repr(v)[:500] for k, v in details.items()}
