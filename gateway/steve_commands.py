"""Workflow commands in SteVe relay mode: through SteVe's REST operations API, into the same
operations log (``charger_operations``) as a command sent over our own socket.

:meth:`SteveCommandRoute.handles` says which commands take this route. SteVe's REST API knows
only some OCPP requests, and some only in its own terms: ``SetChargingProfile`` names a profile
stored in SteVe (not one in the request), ``RemoteStartTransaction`` cannot carry an inline
profile, and ``ReserveNow`` lets SteVe choose the reservation id (ours would be lost). Those,
and every action SteVe's API lacks, go over the relayed socket as in standalone mode.

The row is ``sent`` before the REST call; SteVe's task outcome finishes it exactly as a direct
answer would: the station's status (``answered`` / ``rejected``), a station CallError
(``failed``, ``ChargerCallError``), no answer before SteVe's timeout (``timed_out``,
``ChargerTimeout``), the station not connected to SteVe (``ChargerOffline``: retried, the last
attempt ends ``charger_offline``), SteVe refusing the request (``failed``, ``SteveRefused``) or
unreachable (retried; the last attempt ends ``failed``, ``SteveUnavailable``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.steve import (
    StationCallError,
    StationOffline,
    StationTimeout,
    SteveBadRequest,
    SteveClient,
    SteveError,
    SteveUnavailable,
)
from config.settings import Settings
from db.engine import SessionFactory
from db.operations import finish_operation, mark_sent, note_error
from domain.operations import outcome_of_answer
from workflows.messages import ChargerCommandInput, ChargerCommandResult

# OCPP fields → SteVe's operation parameters, per action SteVe's REST API can carry.
_FIELDS: dict[str, dict[str, str]] = {
    "RemoteStartTransaction": {"idTag": "idTag", "connectorId": "connectorId"},
    "RemoteStopTransaction": {"transactionId": "transactionId"},
    "Reset": {"type": "resetType"},
    "UnlockConnector": {"connectorId": "connectorId"},
    "ChangeAvailability": {"connectorId": "connectorId", "type": "availType"},
    "TriggerMessage": {"requestedMessage": "triggerMessage", "connectorId": "connectorId"},
    "CancelReservation": {"reservationId": "reservationId"},
    "ClearCache": {},
}


def steve_params(action: str, payload: Mapping[str, Any]) -> dict[str, Any] | None:
    """SteVe's parameters for this OCPP request, or None when SteVe's API cannot carry it."""
    mapping = _FIELDS.get(action)
    if mapping is None or set(payload) - set(mapping):
        return None
    params = {mapping[k]: v for k, v in payload.items() if v is not None}
    if action == "TriggerMessage" and params.get("connectorId") == 0:
        del params["connectorId"]  # SteVe's minimum is 1; 0 means "the charger" in OCPP too
    return params


def _last_attempt(info: activity.Info) -> bool:
    policy = info.retry_policy
    return policy is not None and 0 < policy.maximum_attempts <= info.attempt


class SteveCommandRoute:
    def __init__(self, client: SteveClient, sessions: SessionFactory) -> None:
        self.client = client
        self._sessions = sessions

    @classmethod
    def from_settings(
        cls, settings: Settings, sessions: SessionFactory
    ) -> SteveCommandRoute | None:
        if not (settings.steve_ocpp_url and settings.steve_api_url):
            return None
        password = settings.steve_api_password
        client = SteveClient(
            settings.steve_api_url,
            settings.steve_api_user,
            password.get_secret_value() if password else "",
            timeout_s=settings.steve_api_timeout_s,
        )
        return cls(client, sessions)

    def handles(self, action: str, payload: Mapping[str, Any]) -> bool:
        return steve_params(action, payload) is not None

    async def send(
        self, input: ChargerCommandInput, op_id: str, payload: Mapping[str, Any]
    ) -> ChargerCommandResult:
        info = activity.info()
        params = steve_params(input.action, payload)
        assert params is not None
        await mark_sent(self._sessions, op_id)
        try:
            outcome = await self.client.operate_one(input.action, input.charge_box_id, **params)
        except StationOffline as exc:
            await self._retry_or_finish(op_id, info, "charger_offline", exc)
            raise ApplicationError(exc.message, type="ChargerOffline") from exc
        except SteveUnavailable as exc:
            await self._retry_or_finish(op_id, info, "failed", exc)
            raise ApplicationError(exc.message, type="SteveUnavailable") from exc
        except StationTimeout as exc:
            await finish_operation(self._sessions, op_id, "timed_out", error=exc.message)
            raise ApplicationError(exc.message, type="ChargerTimeout", non_retryable=True) from exc
        except StationCallError as exc:
            details = {"code": exc.error_code, "description": exc.message, "via": "steve"}
            await finish_operation(
                self._sessions, op_id, "failed", response=details, error=exc.message
            )
            raise ApplicationError(
                f"{input.action} failed: {exc.error_code}",
                details,
                type="ChargerCallError",
                non_retryable=True,
            ) from exc
        except (SteveBadRequest, SteveError) as exc:
            await finish_operation(self._sessions, op_id, "failed", error=exc.message)
            raise ApplicationError(exc.message, type="SteveRefused", non_retryable=True) from exc
        result: dict[str, Any] = {}
        if outcome.response is not None:
            result["status"] = outcome.response
        await finish_operation(self._sessions, op_id, outcome_of_answer(result), response=result)
        return ChargerCommandResult(payload=result)

    async def _retry_or_finish(
        self, op_id: str, info: activity.Info, final: str, exc: SteveError
    ) -> None:
        if _last_attempt(info):
            await finish_operation(self._sessions, op_id, final, error=exc.message)
        else:
            await note_error(self._sessions, op_id, f"attempt {info.attempt}: {exc.message}")

    async def aclose(self) -> None:
        await self.client.aclose()
