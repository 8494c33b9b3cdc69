"""A typed client for SteVe's REST API (``/steve/api/v1``, HTTP Basic, SteVe >= 3.12).

- ``ocppTags``: list, get, create, update, delete, expire.
- ``transactions``: list, detail (meter values), stop (manual).
- ``operations/{Action}``: RemoteStart/Stop, UnlockConnector, Reset, ChangeAvailability,
  TriggerMessage, ReserveNow, CancelReservation, SetChargingProfile (and ClearCache).

SteVe answers an operation with a task: ``taskId``, ``taskFinished`` and three lists per station
(``successResponses``, ``errorResponses`` for a CallError, ``exceptions`` when SteVe could not
reach the station). :meth:`SteveClient.operate` returns that as an :class:`OperationResult`;
:meth:`SteveClient.operate_one` is the single-station form that turns every failure into a
typed error:

=========================  ====================================================================
:class:`SteveUnavailable`  SteVe did not answer (connection refused, HTTP timeout, 5xx)
:class:`SteveAuthError`    401: wrong API user or password
:class:`SteveNotFound`     404: no such tag / transaction / operation
:class:`SteveBadRequest`   400 / 422 for anything else SteVe refuses
:class:`TagNotEligible`    400 / 422 naming the OCPP tag (unknown, blocked, expired)
:class:`StationOffline`    SteVe has no connection to the station (an ``exceptions`` entry)
:class:`StationTimeout`    the station did not answer before SteVe's timeout (task unfinished)
:class:`StationCallError`  the station answered with a CallError (``errorResponses``)
=========================  ====================================================================

``retryable`` says whether repeating the request may help (only :class:`SteveUnavailable` and
:class:`StationOffline`). Credentials never appear in errors or logs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import httpx

API = "/api/v1"


# -- errors -----------------------------------------------------------------------------------


class SteveError(Exception):
    retryable = False

    def __init__(
        self, message: str, *, status: int | None = None, charge_box_id: str | None = None
    ):
        super().__init__(message)
        self.message = message
        self.status = status
        self.charge_box_id = charge_box_id


class SteveUnavailable(SteveError):
    retryable = True


class SteveAuthError(SteveError):
    pass


class SteveNotFound(SteveError):
    pass


class SteveBadRequest(SteveError):
    pass


class TagNotEligible(SteveBadRequest):
    pass


class StationOffline(SteveError):
    retryable = True


class StationTimeout(SteveError):
    pass


class StationCallError(SteveError):
    def __init__(self, message: str, *, charge_box_id: str, error_code: str) -> None:
        super().__init__(message, charge_box_id=charge_box_id)
        self.error_code = error_code


# -- typed values -----------------------------------------------------------------------------


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def steve_time(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True)
class OcppTag:
    pk: int
    id_tag: str
    parent_id_tag: str | None
    expiry_date: datetime | None
    max_active_transactions: int | None
    blocked: bool
    in_transaction: bool
    note: str | None

    @classmethod
    def of(cls, d: Mapping[str, Any]) -> OcppTag:
        return cls(
            pk=int(d["ocppTagPk"]),
            id_tag=str(d["idTag"]),
            parent_id_tag=d.get("parentIdTag"),
            expiry_date=_time(d.get("expiryDate")),
            max_active_transactions=d.get("maxActiveTransactionCount"),
            blocked=bool(d.get("blocked")),
            in_transaction=bool(d.get("inTransaction")),
            note=d.get("note"),
        )

    def expired(self, at: datetime) -> bool:
        return self.expiry_date is not None and self.expiry_date <= at


@dataclass(frozen=True)
class SteveTransaction:
    id: int
    charge_box_id: str
    connector_id: int
    id_tag: str
    started_at: datetime
    start_wh: int
    stopped_at: datetime | None
    stop_wh: int | None
    stop_reason: str | None
    stop_actor: str | None

    @property
    def active(self) -> bool:
        return self.stopped_at is None

    @classmethod
    def of(cls, d: Mapping[str, Any]) -> SteveTransaction:
        started = _time(d.get("startTimestamp"))
        assert started is not None, "a SteVe transaction has a start time"
        stop = d.get("stopValue")
        return cls(
            id=int(d["id"]),
            charge_box_id=str(d["chargeBoxId"]),
            connector_id=int(d["connectorId"]),
            id_tag=str(d["ocppIdTag"]),
            started_at=started,
            start_wh=_wh(d.get("startValue")),
            stopped_at=_time(d.get("stopTimestamp")),
            stop_wh=_wh(stop) if stop not in (None, "") else None,
            stop_reason=d.get("stopReason"),
            stop_actor=d.get("stopEventActor"),
        )


def _wh(value: Any) -> int:
    """SteVe keeps register values as strings (Wh); some firmwares send decimals."""
    return int(float(str(value or 0)))


@dataclass(frozen=True)
class MeterReading:
    at: datetime | None
    value: str
    measurand: str | None
    unit: str | None
    context: str | None


@dataclass(frozen=True)
class TransactionDetails:
    transaction: SteveTransaction
    values: list[MeterReading]


StationKind = Literal["success", "call_error", "exception", "no_answer"]


@dataclass(frozen=True)
class StationOutcome:
    charge_box_id: str
    kind: StationKind
    response: str | None = None  # the station's status (Accepted, Rejected …) on success
    error_code: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class OperationResult:
    action: str
    task_id: int
    finished: bool
    stations: list[StationOutcome] = field(default_factory=list)

    def outcome(self, charge_box_id: str) -> StationOutcome:
        for s in self.stations:
            if s.charge_box_id == charge_box_id:
                return s
        return StationOutcome(charge_box_id, "no_answer")


_OFFLINE = re.compile(r"offline|not connected|no session|disconnected", re.IGNORECASE)


def operation_result(
    action: str, body: Mapping[str, Any], selected: Sequence[str]
) -> OperationResult:
    stations: list[StationOutcome] = []
    for s in body.get("successResponses") or []:
        stations.append(
            StationOutcome(s.get("chargeBoxId", ""), "success", response=s.get("response"))
        )
    for e in body.get("errorResponses") or []:
        stations.append(
            StationOutcome(
                e.get("chargeBoxId", ""),
                "call_error",
                error_code=e.get("errorCode"),
                message=e.get("errorDescription") or e.get("errorDetails"),
            )
        )
    for x in body.get("exceptions") or []:
        stations.append(
            StationOutcome(x.get("chargeBoxId", ""), "exception", message=x.get("exceptionMessage"))
        )
    seen = {s.charge_box_id for s in stations}
    stations += [StationOutcome(cb, "no_answer") for cb in selected if cb not in seen]
    return OperationResult(
        action, int(body.get("taskId") or 0), bool(body.get("taskFinished")), stations
    )


# -- the client -------------------------------------------------------------------------------

# Operations whose 400/422 is about the OCPP tag they name.
_TAG_OPERATIONS = frozenset({"RemoteStartTransaction", "ReserveNow"})


class SteveClient:
    """One SteVe installation. ``base_url`` includes SteVe's context path
    (``http://steve:8180/steve``)."""

    def __init__(
        self,
        base_url: str,
        user: str,
        password: str,
        *,
        timeout_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + API,
            auth=httpx.BasicAuth(user, password),
            timeout=timeout_s,
            transport=transport,
            headers={"Accept": "application/json"},
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> SteveClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        json: Any = None,
        action: str | None = None,
    ) -> Any:
        try:
            r = await self._http.request(method, path, params=params, json=json)
        except httpx.TimeoutException as exc:
            raise SteveUnavailable(f"SteVe did not answer {method} {path} in time") from exc
        except httpx.TransportError as exc:
            raise SteveUnavailable(f"SteVe is unreachable: {type(exc).__name__}") from exc
        if r.status_code < 300:
            return r.json() if r.content else None
        try:
            detail = r.json()
            message = str(detail.get("message") or detail.get("error") or r.reason_phrase)
        except ValueError:
            message = r.reason_phrase
        text = f"SteVe {method} {path}: {r.status_code} {message}"
        if r.status_code == 401:
            raise SteveAuthError("SteVe refused the API credentials (401)", status=401)
        if r.status_code == 404:
            raise SteveNotFound(text, status=404)
        if r.status_code in (400, 422):
            if action in _TAG_OPERATIONS and re.search(r"tag", message, re.IGNORECASE):
                raise TagNotEligible(text, status=r.status_code)
            raise SteveBadRequest(text, status=r.status_code)
        raise SteveUnavailable(text, status=r.status_code)

    # -- ocppTags ----------------------------------------------------------------------------------

    async def list_tags(self, *, id_tag: str | None = None, **filters: str) -> list[OcppTag]:
        params = {k: v for k, v in {"idTag": id_tag, **filters}.items() if v is not None}
        return [OcppTag.of(d) for d in await self._request("GET", "/ocppTags", params=params)]

    async def find_tag(self, id_tag: str) -> OcppTag | None:
        found = await self.list_tags(id_tag=id_tag)
        return found[0] if found else None

    async def get_tag(self, pk: int) -> OcppTag:
        return OcppTag.of(await self._request("GET", f"/ocppTags/{pk}"))

    @staticmethod
    def _tag_form(
        id_tag: str,
        parent_id_tag: str | None,
        expiry_date: datetime | None,
        max_active_transactions: int | None,
        note: str | None,
    ) -> dict[str, Any]:
        form: dict[str, Any] = {"idTag": id_tag}
        if parent_id_tag:
            form["parentIdTag"] = parent_id_tag
        if expiry_date is not None:
            form["expiryDate"] = steve_time(expiry_date)
        if max_active_transactions is not None:
            form["maxActiveTransactionCount"] = max_active_transactions
        if note is not None:
            form["note"] = note
        return form

    async def create_tag(
        self,
        id_tag: str,
        *,
        parent_id_tag: str | None = None,
        expiry_date: datetime | None = None,
        max_active_transactions: int | None = None,
        note: str | None = None,
    ) -> OcppTag:
        form = self._tag_form(id_tag, parent_id_tag, expiry_date, max_active_transactions, note)
        return OcppTag.of(await self._request("POST", "/ocppTags", json=form))

    async def update_tag(
        self,
        pk: int,
        id_tag: str,
        *,
        parent_id_tag: str | None = None,
        expiry_date: datetime | None = None,
        max_active_transactions: int | None = None,
        note: str | None = None,
    ) -> OcppTag:
        form = self._tag_form(id_tag, parent_id_tag, expiry_date, max_active_transactions, note)
        return OcppTag.of(await self._request("PUT", f"/ocppTags/{pk}", json=form))

    async def delete_tag(self, pk: int) -> OcppTag:
        return OcppTag.of(await self._request("DELETE", f"/ocppTags/{pk}"))

    async def expire_tag(self, pk: int) -> OcppTag:
        return OcppTag.of(await self._request("PATCH", f"/ocppTags/{pk}/expire"))

    # -- transactions -----------------------------------------------------------------------------

    async def list_transactions(
        self,
        *,
        kind: Literal["ALL", "ACTIVE", "STOPPED"] = "ALL",
        charge_box_ids: Sequence[str] = (),
        id_tags: Sequence[str] = (),
        ids: Sequence[int] = (),
        started_from: datetime | None = None,
        started_to: datetime | None = None,
    ) -> list[SteveTransaction]:
        params: list[tuple[str, str]] = [("type", kind)]
        params += [("chargeBoxId", c) for c in charge_box_ids]
        params += [("ocppIdTag", t) for t in id_tags]
        params += [("transactionPk", str(i)) for i in ids]
        if started_from is not None and started_to is not None:
            params += [
                ("periodType", "FROM_TO"),
                ("from", steve_time(started_from)),
                ("to", steve_time(started_to)),
            ]
        rows = await self._request("GET", "/transactions", params=params)
        return [SteveTransaction.of(d) for d in rows]

    async def transaction_details(
        self, pk: int, *, energy_values_only: bool = True
    ) -> TransactionDetails:
        d = await self._request(
            "GET",
            f"/transactions/{pk}",
            params={"energyValuesOnly": "true" if energy_values_only else "false"},
        )
        return TransactionDetails(
            SteveTransaction.of(d["transaction"]),
            [
                MeterReading(
                    _time(v.get("valueTimestamp")),
                    str(v.get("value")),
                    v.get("measurand"),
                    v.get("unit"),
                    v.get("readingContext"),
                )
                for v in d.get("values") or []
            ],
        )

    async def stop_transaction(self, pk: int) -> None:
        await self._request("PATCH", f"/transactions/{pk}/stop")

    # -- operations -------------------------------------------------------------------------------

    async def operate(self, action: str, params: Mapping[str, Any]) -> OperationResult:
        """``POST /operations/{action}`` with SteVe's parameters (``chargeBoxIdList`` …)."""
        body = await self._request(
            "POST", f"/operations/{action}", json=dict(params), action=action
        )
        return operation_result(action, body, list(params.get("chargeBoxIdList") or []))

    async def operate_one(self, action: str, charge_box_id: str, **params: Any) -> StationOutcome:
        """One station's operation; its success outcome, or the typed error of its failure."""
        fields = {k: v for k, v in params.items() if v is not None}
        result = await self.operate(action, {"chargeBoxIdList": [charge_box_id], **fields})
        outcome = result.outcome(charge_box_id)
        if outcome.kind == "success":
            return outcome
        if outcome.kind == "call_error":
            raise StationCallError(
                f"{charge_box_id} answered {action} with CallError {outcome.error_code}: "
                f"{outcome.message or ''}".rstrip(": "),
                charge_box_id=charge_box_id,
                error_code=outcome.error_code or "GenericError",
            )
        if outcome.kind == "exception":
            if _OFFLINE.search(outcome.message or ""):
                raise StationOffline(
                    f"{charge_box_id} is not connected to SteVe ({action} not sent)",
                    charge_box_id=charge_box_id,
                )
            raise SteveBadRequest(
                f"SteVe could not run {action} on {charge_box_id}: {outcome.message}",
                charge_box_id=charge_box_id,
            )
        raise StationTimeout(
            f"{charge_box_id} did not answer {action} before SteVe's timeout "
            f"(task {result.task_id})",
            charge_box_id=charge_box_id,
        )

    async def remote_start(
        self,
        charge_box_id: str,
        id_tag: str,
        *,
        connector_id: int | None = None,
        charging_profile_pk: int | None = None,
    ) -> StationOutcome:
        return await self.operate_one(
            "RemoteStartTransaction",
            charge_box_id,
            idTag=id_tag,
            connectorId=connector_id,
            chargingProfilePk=charging_profile_pk,
        )

    async def remote_stop(self, charge_box_id: str, transaction_id: int) -> StationOutcome:
        return await self.operate_one(
            "RemoteStopTransaction", charge_box_id, transactionId=transaction_id
        )

    async def unlock_connector(self, charge_box_id: str, connector_id: int) -> StationOutcome:
        return await self.operate_one("UnlockConnector", charge_box_id, connectorId=connector_id)

    async def reset(self, charge_box_id: str, kind: Literal["Hard", "Soft"]) -> StationOutcome:
        return await self.operate_one("Reset", charge_box_id, resetType=kind)

    async def change_availability(
        self, charge_box_id: str, kind: Literal["Inoperative", "Operative"], connector_id: int = 0
    ) -> StationOutcome:
        return await self.operate_one(
            "ChangeAvailability", charge_box_id, availType=kind, connectorId=connector_id
        )

    async def trigger_message(
        self, charge_box_id: str, message: str, connector_id: int | None = None
    ) -> StationOutcome:
        return await self.operate_one(
            "TriggerMessage", charge_box_id, triggerMessage=message, connectorId=connector_id
        )

    async def reserve_now(
        self, charge_box_id: str, connector_id: int, id_tag: str, expiry: datetime
    ) -> StationOutcome:
        return await self.operate_one(
            "ReserveNow",
            charge_box_id,
            connectorId=connector_id,
            idTag=id_tag,
            expiry=steve_time(expiry),
        )

    async def cancel_reservation(self, charge_box_id: str, reservation_id: int) -> StationOutcome:
        return await self.operate_one(
            "CancelReservation", charge_box_id, reservationId=reservation_id
        )

    async def set_charging_profile(
        self,
        charge_box_id: str,
        charging_profile_pk: int,
        connector_id: int,
        transaction_id: int | None = None,
    ) -> StationOutcome:
        return await self.operate_one(
            "SetChargingProfile",
            charge_box_id,
            chargingProfilePk=charging_profile_pk,
            connectorId=connector_id,
            transactionId=transaction_id,
        )
