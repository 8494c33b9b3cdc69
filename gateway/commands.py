"""Commands to chargers: the ``send_charger_command`` activity on ``gateway-<instance>``.

The activity runs in the gateway process that holds the charger's socket and calls the charger
outside any message handler (a call from inside a handler would deadlock the connection).

Every command is an operation in the operations log (``charger_operations``, see
docs/operations.md): the row is ``requested`` before anything else happens, ``sent`` just before
the frame leaves (the frame's unique id is the row's id), then finished with the charger's answer
or the error below. The row is the caller's (``input.operation_id``, written by the service
layer) or one derived from the calling workflow run and activity id, so a retried attempt finds
the row of the first one:

- a row already finished: its outcome is answered again, nothing is sent;
- a row ``sent`` without an answer (the gateway died or the socket dropped mid-call): an
  idempotent action is sent again; a non-idempotent one (``NON_IDEMPOTENT_ACTIONS``: Reset,
  RemoteStartTransaction, UpdateFirmware, DataTransfer) is not — the row ends ``failed`` and the
  activity fails with ``ChargerOffline`` (non-retryable).

Errors (``ApplicationError.type``)::

    ChargerOffline   no live socket for this charger in this process   (retryable; the row
                     stays requested until the last attempt, then charger_offline)
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
import re
import time
import uuid
from typing import Any, NoReturn

from ocpp.charge_point import (
    camel_to_snake_case,
    remove_nones,
    serialize_as_dict,
    snake_to_camel_case,
)
from ocpp.exceptions import OCPPError, UnknownCallErrorCodeError
from ocpp.messages import Call, validate_payload
from ocpp.v16 import call
from ocpp.v201 import call as call201
from sqlalchemy import select
from temporalio import activity
from temporalio.exceptions import ApplicationError
from websockets.exceptions import ConnectionClosed

from db.engine import SessionFactory
from db.models import EvCard, Transaction, session_intents
from db.operation_models import ChargerOperation
from db.operations import (
    finish_operation,
    insert_operation,
    mark_sent,
    note_error,
    operation_secrets,
)
from domain.operations import (
    FINAL_STATUSES,
    NON_IDEMPOTENT_ACTIONS,
    has_redacted_secret,
    merge_secrets,
    outcome_of_answer,
)
from gateway import ocpp201_operations as ocpp201
from gateway.registry import ChargerRegistry
from gateway.steve_commands import SteveCommandRoute
from observability.logs import bound
from observability.metrics import COMMAND_ROUND_TRIP
from workflows.messages import (
    ACTIVITY_SEND_CHARGER_COMMAND,
    ChargerCommandInput,
    ChargerCommandResult,
)

# Derived operation ids (a workflow's command without an operation id of its own).
OPERATION_NAMESPACE = uuid.UUID("5f0b8a52-6a43-4c55-9a55-3c1f1b0d9e61")


def derived_operation_id(info: activity.Info) -> str:
    """Stable across the attempts of one activity: the run and the activity id."""
    key = f"{info.workflow_id}/{info.workflow_run_id}/{info.activity_id}"
    return str(uuid.uuid5(OPERATION_NAMESPACE, key))


def _last_attempt(info: activity.Info) -> bool:
    policy = info.retry_policy
    return policy is not None and 0 < policy.maximum_attempts <= info.attempt


class ChargerCommands:
    def __init__(
        self,
        registry: ChargerRegistry,
        sessions: SessionFactory,
        steve: SteveCommandRoute | None = None,
    ) -> None:
        self._registry = registry
        self._sessions = sessions
        # SteVe relay mode: the commands SteVe's REST API carries go that way.
        self._steve = steve

    @activity.defn(name=ACTIVITY_SEND_CHARGER_COMMAND)
    async def send_charger_command(self, input: ChargerCommandInput) -> ChargerCommandResult:
        """The round trip is measured by action and outcome (``ok`` or the error's type)."""
        started = time.perf_counter()
        outcome = "ok"
        try:
            with bound(charge_box_id=input.charge_box_id):
                return await self._send_command(input)
        except ApplicationError as exc:
            outcome = exc.type or "error"
            raise
        except BaseException:
            outcome = "error"
            raise
        finally:
            COMMAND_ROUND_TRIP.labels(input.action, outcome).observe(time.perf_counter() - started)

    async def _send_command(self, input: ChargerCommandInput) -> ChargerCommandResult:
        info = activity.info()
        op_id = input.operation_id or derived_operation_id(info)
        row = await self._row(input, op_id, info)
        if row.status in FINAL_STATUSES:
            return _replay(row)
        if row.sent_at is not None and input.action in NON_IDEMPOTENT_ACTIONS:
            message = (
                f"{input.action} was sent to {input.charge_box_id} without an answer; "
                "not sent again (it is not safe to repeat)"
            )
            await finish_operation(self._sessions, op_id, "failed", error=message)
            raise ApplicationError(message, type="ChargerOffline", non_retryable=True)
        cp = self._registry.get(input.charge_box_id)
        if cp is None:
            message = f"{input.charge_box_id} is not connected to this gateway"
            if _last_attempt(info):
                await finish_operation(self._sessions, op_id, "charger_offline", error=message)
            else:
                await note_error(self._sessions, op_id, f"attempt {info.attempt}: {message}")
            raise ApplicationError(message, type="ChargerOffline")
        v201 = getattr(cp, "ocpp_version", "1.6") == ocpp201.OCPP_VERSION
        if not v201 and input.action in ocpp201.OCPP201_ONLY_ACTIONS:
            await self._fail(
                op_id,
                f"{input.action} exists only in OCPP 2.0.1; this is a 1.6 connection",
                "BadCommand",
            )
        payload = dict(input.payload)
        if has_redacted_secret(input.action, payload):
            payload = merge_secrets(payload, await operation_secrets(self._sessions, op_id))
            if has_redacted_secret(input.action, payload):
                await self._fail(op_id, "the operation's secret value is gone", "BadCommand")
        if v201:
            # Translated per connection: callers keep the 1.6 names (ocpp201_operations.py).
            # 2.0.1 chargers are served here even in SteVe relay mode (SteVe speaks 1.6).
            request = await self._request201(input, op_id, payload, info)
            if input.action == "TriggerMessage" and hasattr(cp, "triggered"):
                cp.triggered.add(request.requested_message)
        elif self._steve is not None and self._steve.handles(input.action, payload):
            return await self._steve.send(input, op_id, payload)
        else:
            request = await self._request(input, op_id, payload)
        await mark_sent(self._sessions, op_id)
        try:
            async with asyncio.timeout(input.timeout_s):
                answer = await cp.call(request, suppress=False, unique_id=op_id)
        except TimeoutError as exc:
            message = (
                f"{input.charge_box_id} did not answer {input.action} within {input.timeout_s}s"
            )
            await finish_operation(self._sessions, op_id, "timed_out", error=message)
            raise ApplicationError(message, type="ChargerTimeout", non_retryable=True) from exc
        except ConnectionClosed as exc:
            message = f"{input.charge_box_id} disconnected during {input.action}"
            final = input.action in NON_IDEMPOTENT_ACTIONS or _last_attempt(info)
            if final:
                await finish_operation(self._sessions, op_id, "charger_offline", error=message)
            else:
                await note_error(self._sessions, op_id, f"attempt {info.attempt}: {message}")
            raise ApplicationError(message, type="ChargerOffline", non_retryable=final) from exc
        except (OCPPError, UnknownCallErrorCodeError) as exc:
            # A code the library does not know (2.0.1's RpcFrameworkError,
            # MessageTypeNotSupported …) is as clear a refusal as any other: not a retry.
            details = _call_error(exc)
            await finish_operation(
                self._sessions,
                op_id,
                "failed",
                response=details,
                error=f"CallError {details['code']}: {details['description']}",
            )
            raise ApplicationError(
                f"{input.action} failed: {details['code']}",
                details,
                type="ChargerCallError",
                non_retryable=True,
            ) from exc
        result: dict[str, Any] = snake_to_camel_case(remove_nones(serialize_as_dict(answer)))
        if v201:
            result = ocpp201.translate_answer(input.action, payload, result)
        await finish_operation(self._sessions, op_id, outcome_of_answer(result), response=result)
        return ChargerCommandResult(payload=result)

    async def _row(
        self, input: ChargerCommandInput, op_id: str, info: activity.Info
    ) -> ChargerOperation:
        """The operation's row, written now (``requested``) unless the caller or an earlier
        attempt wrote it."""
        async with self._sessions() as db, db.begin():
            await insert_operation(
                db,
                operation_id=op_id,
                charge_box_id=input.charge_box_id,
                action=input.action,
                fields=dict(input.payload),
                requested_by=f"workflow:{info.workflow_type}",
                source=info.workflow_id,
                workflow_id=info.workflow_id,
            )
            row = await db.get(ChargerOperation, op_id)
            assert row is not None
            db.expunge(row)
            return row

    async def _request(
        self, input: ChargerCommandInput, op_id: str, payload: dict[str, Any]
    ) -> Any:
        request_cls = getattr(call, input.action, None)
        if request_cls is None:
            await self._fail(op_id, f"unsupported action {input.action}", "BadCommand")
        try:
            request = request_cls(**camel_to_snake_case(payload))
        except TypeError as exc:
            await self._fail(op_id, f"payload does not fit {input.action}: {exc}", "BadCommand")
        try:
            await _validate_outgoing(input.action, request)
        except ApplicationError as exc:
            await finish_operation(self._sessions, op_id, "failed", error=exc.message)
            raise
        return request

    async def _request201(
        self, input: ChargerCommandInput, op_id: str, payload: dict[str, Any], info: activity.Info
    ) -> Any:
        """The 2.0.1 request for an operation (named as in 1.6, or a 2.0.1-only one)."""
        try:
            facts = await self._facts201(input, payload, info)
            action, fields = ocpp201.translate_request(input.action, payload, facts)
        except ocpp201.Untranslatable as exc:
            await self._fail(op_id, str(exc), "BadCommand")
        issues = ocpp201.validate_request(action, fields)
        if issues:
            first = issues[0]
            where = ".".join(str(p) for p in first["path"]) or "payload"
            await self._fail(
                op_id,
                f"{action} does not fit the OCPP 2.0.1 schema: {where}: {first['message']}",
                "InvalidCommandPayload",
            )
        request_cls = getattr(call201, action)
        try:
            return request_cls(**camel_to_snake_case(fields))
        except TypeError as exc:
            await self._fail(op_id, f"payload does not fit {action}: {exc}", "BadCommand")

    async def _facts201(
        self, input: ChargerCommandInput, payload: dict[str, Any], info: activity.Info
    ) -> ocpp201.Facts:
        async with self._sessions() as db:
            if input.action == "RemoteStartTransaction":
                # The session's remote-start intent (written just before this command): its id
                # is the remoteStartId the charger echoes in its TransactionEvent.
                t = session_intents
                intent = await db.scalar(
                    select(t.c.id)
                    .where(
                        t.c.workflow_id == info.workflow_id,
                        t.c.charge_box_id == input.charge_box_id,
                    )
                    .order_by(t.c.id.desc())
                    .limit(1)
                )
                token_type = await db.scalar(
                    select(EvCard.token_type).where(EvCard.id_tag == payload.get("idTag"))
                )
                return ocpp201.Facts(remote_start_id=intent, token_type=token_type)
            if input.action == "RemoteStopTransaction":
                ocpp_tx = await db.scalar(
                    select(Transaction.ocpp_transaction_id).where(
                        Transaction.id == payload.get("transactionId"),
                        Transaction.charge_box_id == input.charge_box_id,
                    )
                )
                return ocpp201.Facts(ocpp_transaction_id=ocpp_tx)
        return ocpp201.Facts()

    async def _fail(self, op_id: str, message: str, type: str) -> NoReturn:
        await finish_operation(self._sessions, op_id, "failed", error=message)
        raise ApplicationError(message, type=type, non_retryable=True)


def _replay(row: ChargerOperation) -> ChargerCommandResult:
    """A finished operation's outcome, answered again to a retried attempt."""
    if row.status in ("answered", "rejected"):
        return ChargerCommandResult(payload=dict(row.response or {}))
    error_type = {
        "timed_out": "ChargerTimeout",
        "charger_offline": "ChargerOffline",
    }.get(row.status, "ChargerCallError")
    raise ApplicationError(
        row.error or row.status, row.response or {}, type=error_type, non_retryable=True
    )


async def _validate_outgoing(action: str, request: Any) -> None:
    """The library's own outgoing validation, run first so its failure has a clear type."""
    payload = snake_to_camel_case(remove_nones(serialize_as_dict(request)))
    try:
        await validate_payload(Call("validate", action, payload), "1.6")
    except OCPPError as exc:
        cause = _plain(exc.details).get("cause") or exc.description
        raise ApplicationError(
            f"{type(exc).__name__}: {cause}",
            {"error": type(exc).__name__, "code": exc.code, "cause": str(cause)},
            type="InvalidCommandPayload",
            non_retryable=True,
        ) from None


def _call_error(exc: OCPPError | UnknownCallErrorCodeError) -> dict[str, Any]:
    if isinstance(exc, OCPPError):
        return {"code": exc.code, "description": exc.description, "details": _plain(exc.details)}
    found = re.search(r"Error code '([^']*)'", str(exc))
    return {
        "code": found.group(1) if found else "Unknown",
        "description": "an error code this library does not know (OCPP 2.0.1 defines it)",
        "details": {},
    }


def _plain(details: object) -> dict[str, str]:
    """OCPP error details as strings only (they may hold the library's message objects)."""
    if not isinstance(details, dict):
        return {}
    return {str(k): v if isinstance(v, str) else repr(v)[:500] for k, v in details.items()}
