"""The registry the outbox relay delivers by: an outbox ``kind`` → (workflow type, start input,
signal name, signal argument).

Every row the gateway writes to ``gateway_outbox`` has a kind; the relay looks the kind up here
and signal-with-starts the route's workflow type, on the row's ``workflow_id``, with the input
and signal argument the route builds from the row's payload. The relay itself knows no workflow.

A kind that is not registered is *not* delivered: the relay does not claim it (the row waits,
with its workflow's later rows behind it, for a gateway that knows it; see ``docs/upgrading.md``).

Two ways in:

* :func:`register` — a route for a kind whose rows some gateway code writes itself (the
  charging-session kinds below, the local-list, reservation and site-load triggers).
* :func:`subscribe` — a workflow that wants a *charger event* the gateway publishes (today
  :data:`CONNECTOR_STATUS_AFTER_STOP`): the gateway writes one row per subscriber, in the
  journal transaction of the frame, with the subscriber's kind and workflow id. No subscriber,
  no row and no query: the frame's hot path pays for subscriptions only when there are some.

Rows of subscribed and generic kinds keep the payload shape
``{"workflow": {"type", "input"}, "signal": {...}}`` that relays since the local-list trigger
deliver as told, so a gateway one version older delivers them too during a rolling upgrade.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from config.settings import Settings
from workflows.local_list_messages import LOCAL_LIST_SYNC_WORKFLOW, SIGNAL_LOCAL_LIST_SYNC
from workflows.messages import (
    SESSION_WORKFLOW,
    SIGNAL_AUTHORIZATION_REFUSED,
    SIGNAL_CONNECTOR_STATUS,
    SIGNAL_METER_PROGRESS,
    SIGNAL_TRANSACTION_CLOSED,
    SIGNAL_TRANSACTION_STARTED,
    SIGNAL_TRANSACTION_STOPPED,
    AuthorizationRefused,
    ConnectorStatus,
    MeterProgress,
    SessionInput,
    TransactionClosed,
    TransactionStarted,
    TransactionStopped,
)
from workflows.reservation_messages import RESERVATION_WORKFLOW, SIGNAL_RESERVATION_JOIN
from workflows.site_load_messages import SIGNAL_SITE_LOAD, SITE_LOAD_WORKFLOW

Payload = Mapping[str, Any]


def _generic_input(payload: Payload, _settings: Settings) -> Any:
    """The input the row names (``payload["workflow"]["input"]``)."""
    workflow = payload.get("workflow")
    return dict(workflow.get("input", {})) if isinstance(workflow, dict) else {}


def _plain_signal(row_id: int, payload: Payload) -> Any:
    return {**payload.get("signal", {}), "event_id": row_id}


@dataclass(frozen=True)
class Route:
    """How the relay delivers rows of one kind.

    ``start_input(payload, settings)`` builds the workflow's start input (used when the workflow
    is not running); ``signal_arg(row_id, payload)`` the signal's argument (``event_id`` = the row
    id, so a redelivery is recognised). ``may_restart``: a closed workflow id is started again
    for this kind; otherwise a closed workflow drops the row (delivered, with a note) — a late
    status must never resurrect a finished workflow. ``superseded_by``: kinds whose later row
    makes a row of this kind pointless — when one of them already waits for the same workflow,
    the row is marked delivered with a note instead of signalled (after an outage, a session's
    queued meter progress is replaced by the newest progress or by its stop).
    """

    kind: str
    workflow_type: str
    signal: str
    start_input: Callable[[Payload, Settings], Any] = _generic_input
    signal_arg: Callable[[int, Payload], Any] = _plain_signal
    may_restart: bool = True
    superseded_by: frozenset[str] = frozenset()


_ROUTES: dict[str, Route] = {}


def register(route: Route) -> Route:
    """Add a route; registering the same kind twice with another route is a programming error."""
    known = _ROUTES.get(route.kind)
    if known is not None and known != route:
        raise ValueError(f"outbox kind {route.kind!r} is already routed to {known.workflow_type}")
    if len(route.kind) > 32:
        raise ValueError(f"outbox kind {route.kind!r} is longer than the column (32)")
    _ROUTES[route.kind] = route
    return route


def route_for(kind: str) -> Route | None:
    return _ROUTES.get(kind)


def known_kinds() -> list[str]:
    return sorted(_ROUTES)


# --- charger events -------------------------------------------------------------------------

CONNECTOR_STATUS_AFTER_STOP = "connector_status_after_stop"
"""A StatusNotification on a connector with no open transaction. The event carries
``charge_box_id``, ``connector_id``, ``status``, ``error_code``, ``at`` (ISO 8601) and the
connector's last transaction, if any: ``transaction_id``, ``session_workflow_id``,
``stopped_at``."""

CHARGER_ACTIVITY = "charger_activity"
"""A charger started a transaction (journaled; once per transaction). The event carries
``charge_box_id``, ``connector_id``, ``transaction_id`` and ``at`` (ISO 8601). SteVe's Adaptive
Cadence subscribes to it when SteVe is configured (``gateway/subscribers.py``)."""

CHARGER_EVENTS = frozenset({CONNECTOR_STATUS_AFTER_STOP, CHARGER_ACTIVITY})


@dataclass(frozen=True)
class Subscription:
    """A workflow that receives a charger event.

    ``workflow_id(event)`` names the workflow that gets it, or None to skip this event (e.g.
    an idle-fee workflow that only cares about connectors whose last session is known).
    ``start_input(event)`` is its start input (JSON); the signal argument is the event plus
    ``event_id``. ``kind`` is both the outbox kind and the signal name.
    """

    event: str
    kind: str
    workflow_type: str
    workflow_id: Callable[[dict[str, Any]], str | None]
    start_input: Callable[[dict[str, Any]], dict[str, Any]] = field(default=lambda _e: {})
    may_restart: bool = True


_SUBSCRIBERS: dict[str, list[Subscription]] = {}


def subscribe(sub: Subscription) -> Subscription:
    """Subscribe a workflow to a charger event (and route its kind). Call it at import time of
    a module the gateway imports (``gateway/subscribers.py``)."""
    if sub.event not in CHARGER_EVENTS:
        raise ValueError(f"unknown charger event {sub.event!r}")
    register(
        Route(
            kind=sub.kind,
            workflow_type=sub.workflow_type,
            signal=sub.kind,
            may_restart=sub.may_restart,
        )
    )
    subscribers = _SUBSCRIBERS.setdefault(sub.event, [])
    if sub not in subscribers:
        subscribers.append(sub)
    return sub


def unsubscribe(sub: Subscription) -> None:
    """Remove a subscription and its route (tests)."""
    subscribers = _SUBSCRIBERS.get(sub.event, [])
    if sub in subscribers:
        subscribers.remove(sub)
    _ROUTES.pop(sub.kind, None)


def subscribers(event: str) -> list[Subscription]:
    return list(_SUBSCRIBERS.get(event, ()))


_PUBLISH = text(
    "INSERT INTO gateway_outbox (workflow_id, kind, payload, attempts) "
    "VALUES (:workflow_id, :kind, CAST(:payload AS jsonb), 0)"
)


async def publish(s: AsyncSession, event_name: str, event: dict[str, Any]) -> int:
    """One outbox row per subscriber of ``event_name`` (in the caller's transaction); the number
    of rows written (wake the relay when > 0)."""
    written = 0
    for sub in _SUBSCRIBERS.get(event_name, ()):
        workflow_id = sub.workflow_id(event)
        if workflow_id is None:
            continue
        payload = {
            "workflow": {"type": sub.workflow_type, "input": sub.start_input(event)},
            "signal": event,
        }
        await s.execute(
            _PUBLISH, {"workflow_id": workflow_id, "kind": sub.kind, "payload": json.dumps(payload)}
        )
        written += 1
    return written


# --- the built-in routes --------------------------------------------------------------------


def _session_input(payload: Payload, settings: Settings) -> Any:
    return SessionInput.model_validate({**payload.get("session", {}), **settings.session_timers()})


def _session_signal(model: type[BaseModel]) -> Callable[[int, Payload], Any]:
    def build(row_id: int, payload: Payload) -> Any:
        return model.model_validate({**payload.get("signal", {}), "event_id": row_id})

    return build


# A session's meter progress only updates its latest register: a later progress row, or the
# stop (which carries the final register), makes a waiting one pointless. Not a closure, which
# bills up to the last register the session heard.
_PROGRESS_SUPERSEDED_BY = frozenset({SIGNAL_METER_PROGRESS, SIGNAL_TRANSACTION_STOPPED})

for _kind, _model, _restart in (
    (SIGNAL_TRANSACTION_STARTED, TransactionStarted, True),
    # A stop means something only to the run that saw its start (a fresh run in ``requested``
    # rejects it). When that run has closed, the row is a redelivery (the gateway died between
    # Temporal taking the signal and the row being marked) or a stop past the late-stop window:
    # restarting the id would start a phantom run that overwrites the billed session's read model.
    (SIGNAL_TRANSACTION_STOPPED, TransactionStopped, False),
    (SIGNAL_METER_PROGRESS, MeterProgress, False),
    (SIGNAL_CONNECTOR_STATUS, ConnectorStatus, False),
    (SIGNAL_TRANSACTION_CLOSED, TransactionClosed, False),
    (SIGNAL_AUTHORIZATION_REFUSED, AuthorizationRefused, False),
):
    register(
        Route(
            kind=_kind,
            workflow_type=SESSION_WORKFLOW,
            signal=_kind,
            start_input=_session_input,
            signal_arg=_session_signal(_model),
            may_restart=_restart,
            superseded_by=_PROGRESS_SUPERSEDED_BY
            if _kind == SIGNAL_METER_PROGRESS
            else frozenset(),
        )
    )

register(Route(SIGNAL_LOCAL_LIST_SYNC, LOCAL_LIST_SYNC_WORKFLOW, SIGNAL_LOCAL_LIST_SYNC))
register(Route(SIGNAL_SITE_LOAD, SITE_LOAD_WORKFLOW, SIGNAL_SITE_LOAD))
register(Route(SIGNAL_RESERVATION_JOIN, RESERVATION_WORKFLOW, SIGNAL_RESERVATION_JOIN))
