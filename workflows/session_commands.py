"""Pre-authorization and commands to the charger for ChargingSessionWorkflow: the card check,
the remote start with its recorded intent, and commands routed to the gateway that holds the
charger's socket.

A mixin of :class:`workflows.charging_session.ChargingSessionWorkflow` (deterministic; I/O is in
activities). The gateway's ``send_charger_command`` runs on ``gateway-<instance>``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.sessions import (
        ChargerRouteInput,
        PreAuthorizeCardInput,
        RecordSessionIntentInput,
        SessionActivities,
    )
    from domain.session import (
        AuthorizationRejected,
        Event,
        Rejection,
        RemoteStartFailed,
        RemoteStartRequested,
        SendRemoteStart,
        SessionState,
        Transition,
    )
    from workflows import messages as msg
    from workflows import session_support as sup

# Remote starts record a session_intents row before RemoteStartTransaction is sent.
INTENT_PATCH = "remote-start-intent-v1"


class SessionCommandsMixin:
    """Charger commands for :class:`workflows.charging_session.ChargingSessionWorkflow`."""

    _input: msg.SessionInput
    _state: SessionState

    _auth_lock: asyncio.Lock
    _auth_result: msg.PreAuthorizeResult | None
    _remote_start_outcome: str | None  # shown by the status query (polaris sessions start)

    # Provided by ChargingSessionWorkflow (declared here so the mixin type-checks).
    _apply: Callable[[Event], Transition | Rejection]

    _sync_read_model: Callable[[], Awaitable[None]]

    # -- pre-authorization (the pre_authorize update and the remote start) -------------------

    async def _remote_start(self) -> None:
        if not self._state.id_tag:
            self._apply(
                AuthorizationRejected(at=workflow.now(), status="Invalid", reason="no_id_tag")
            )
            return
        async with self._auth_lock:
            result = await self._authorize(self._state.id_tag, self._state.connector_id)
        if result.status == "Accepted":
            # The read-model row (charger, card, pre_authorized), written by _authorize, is the
            # recorded intent the gateway matches a StartTransaction against.
            self._apply(RemoteStartRequested(at=workflow.now()))

    async def _authorize(self, id_tag: str, connector_id: int | None) -> msg.PreAuthorizeResult:
        check = await sup.db_activity(
            SessionActivities.pre_authorize_card,
            PreAuthorizeCardInput(
                workflow_id=workflow.info().workflow_id,
                id_tag=id_tag,
                charge_box_id=self._state.charge_box_id,
            ),
            start_to_close_timeout=sup.AUTH_TIMEOUT,
            retry_policy=sup.AUTH_RETRY,
        )
        result = msg.PreAuthorizeResult(
            status=check.status,
            reason=check.reason,
            parent_id_tag=check.parent_id_tag,
            expiry_date=check.expiry_date,
        )
        if result.status == "Accepted":
            event: Event = sup.pre_authorized_event(
                workflow.now(),
                id_tag,
                connector_id,
                check.user_id,
                check.lago_customer_external_id,
            )
        else:
            event = AuthorizationRejected(
                at=workflow.now(), status=result.status, reason=result.reason
            )
        if isinstance(self._apply(event), Transition):
            self._auth_result = result
        if result.status == "Accepted":
            # Written before answering, so the card's next tap elsewhere counts this session.
            await self._sync_read_model()
        return result

    # -- commands -------------------------------------------------------------------------------

    async def _send_command(
        self, action: msg.ChargerAction, payload: dict[str, object]
    ) -> msg.ChargerCommandResult:
        route = await workflow.execute_activity_method(
            SessionActivities.resolve_charger_route,
            ChargerRouteInput(charge_box_id=self._state.charge_box_id),
            start_to_close_timeout=sup.DB_TIMEOUT,
            retry_policy=sup.DB_RETRY,
        )
        answer: msg.ChargerCommandResult = await workflow.execute_activity(
            msg.ACTIVITY_SEND_CHARGER_COMMAND,
            msg.ChargerCommandInput(
                charge_box_id=self._state.charge_box_id, action=action, payload=payload
            ),
            task_queue=route.task_queue,
            result_type=msg.ChargerCommandResult,
            schedule_to_start_timeout=sup.COMMAND_START_TIMEOUT,
            start_to_close_timeout=sup.COMMAND_CLOSE_TIMEOUT,
            retry_policy=sup.COMMAND_RETRY,
        )
        return answer

    async def _command_refused(
        self, action: msg.ChargerAction, payload: dict[str, object]
    ) -> str | None:
        """Send a command; the reason it was refused, or None when the charger accepted it."""
        try:
            answer = await self._send_command(action, payload)
        except ActivityError as err:
            cause = err.cause
            if not isinstance(cause, ApplicationError):
                return str(err)
            workflow.logger.warning("%s not delivered: %s: %s", action, cause.type, cause.message)
            return cause.type or str(cause)
        status = answer.payload.get("status")
        return None if status == "Accepted" else str(status)

    async def _send_remote_start(self, effect: SendRemoteStart) -> None:
        if workflow.patched(INTENT_PATCH):
            await self._record_intent(effect)
        payload: dict[str, object] = {"idTag": effect.id_tag}
        if effect.connector_id is not None:
            payload["connectorId"] = effect.connector_id
        refused = await self._command_refused("RemoteStartTransaction", payload)
        self._remote_start_outcome = refused or "Accepted"
        if refused is not None:
            self._apply(RemoteStartFailed(at=workflow.now(), reason=refused))

    async def _record_intent(self, effect: SendRemoteStart) -> None:
        """The ``session_intents`` row the gateway's StartTransaction handler joins to this
        workflow, written before the charger can possibly start."""
        since = self._state.pre_authorized_at or workflow.now()
        remaining = self._input.start_timeout_s - (workflow.now() - since).total_seconds()
        await workflow.execute_activity_method(
            SessionActivities.record_session_intent,
            RecordSessionIntentInput(
                workflow_id=workflow.info().workflow_id,
                charge_box_id=self._state.charge_box_id,
                id_tag=effect.id_tag,
                connector_id=effect.connector_id,
                expires_in_s=max(remaining, 1.0),
            ),
            start_to_close_timeout=sup.DB_TIMEOUT,
            retry_policy=sup.DB_RETRY,
        )


__all__ = ["INTENT_PATCH", "SessionCommandsMixin"]
