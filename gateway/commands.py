"""Commands to chargers: the ``send_charger_command`` activity on ``gateway-<instance>``.

The activity runs in the gateway process that holds the charger's socket and calls the charger
outside any message handler (a call from inside a handler would deadlock the connection).

Errors (``ApplicationError.type``)::

    ChargerOffline   no live socket for this charger in this process   (retryable)
    ChargerTimeout   the charger did not answer within timeout_s       (non-retryable)
    ChargerCallError the charger answered with a CallError, or the
                     request/answer broke the OCPP schema              (non-retryable)
    BadCommand       the payload does not fit the action               (non-retryable)
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
                {"code": exc.code, "description": exc.description, "details": exc.details},
                type="ChargerCallError",
                non_retryable=True,
            ) from exc
        payload: dict[str, Any] = snake_to_camel_case(remove_nones(serialize_as_dict(answer)))
        return ChargerCommandResult(payload=payload)
