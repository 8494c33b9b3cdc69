"""A driver starts and stops their own charge from the phone.

:func:`start_session` picks the driver's card (their active mapping whose card can charge; with
several, the most recently linked), checks the charger and the connector (the availability rule
of ``domain/availability.py``), then starts ``ChargingSessionWorkflow`` as a remote start: the
workflow pre-authorizes the card, records its intent and sends ``RemoteStartTransaction`` through
the gateway that holds the charger's socket. The workflow id is derived from the driver and their
``client_request_id`` (and Temporal refuses a second execution with it, even after the first
closed), so a retried or concurrent request answers the same session and never starts a second.

:func:`stop_session` asks the driver's own running session to stop (the workflow's
``remote_stop``); a session that is stopping or over answers as it is (idempotent). Sessions of
other drivers are "not found".

Errors are :class:`DriverStartError` with the codes of ``domain/driver_start.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from db.audit import add_audit
from db.models import Charger, ChargingSession, Connector, EvCard, UserMapping
from domain.authorization import CardFacts
from domain.driver_start import (
    NO_CARD,
    StartProblem,
    card_problem,
    connector_problem,
    rejection_problem,
)
from domain.session import TRANSACTION_PHASES
from services.actor import Actor
from services.availability import connector_availability
from services.context import ServiceContext
from services.errors import NotFound, ServiceError, Unavailable
from services.validation import invalid
from workflows.messages import (
    QUERY_STATUS,
    SESSION_WORKFLOW,
    UPDATE_REMOTE_STOP,
    RemoteStopInput,
    RemoteStopResult,
    SessionInput,
    SessionStatus,
    remote_workflow_id,
)

log = logging.getLogger(__name__)

CLIENT_REQUEST_ID_PATTERN = r"^[A-Za-z0-9._:-]{8,64}$"
# How long a start waits for the card check and the charger's answer before answering 202.
START_WAIT_S = 20.0
POLL_S = 0.25


class DriverStartError(ServiceError):
    """A start (or stop) refused for a reason the driver can act on; ``code`` says which."""

    def __init__(self, problem: StartProblem) -> None:
        super().__init__(problem.message)
        self.status = problem.status
        self.code = problem.code


def driver_workflow_id(user_id: str, charge_box_id: str, client_request_id: str) -> str:
    """The session a driver's request names: the same driver, charger and request id always
    give the same workflow; the user id is hashed (workflow ids show in Temporal and Lago)."""
    digest = hashlib.sha256(f"{user_id}\n{client_request_id}".encode()).hexdigest()[:24]
    return remote_workflow_id(charge_box_id, f"driver-{digest}")


# -- the card ------------------------------------------------------------------------------------


async def pick_card(db: AsyncSession, user_id: str, now: datetime) -> str:
    """The driver's card that can charge: of their active mappings, newest link first, the
    first card without a problem. None usable: the newest card's problem (or NO_CARD)."""
    rows = (
        await db.execute(
            select(EvCard, UserMapping.created_at)
            .join(UserMapping, UserMapping.id_tag == EvCard.id_tag)
            .where(UserMapping.user_id == user_id, UserMapping.is_active.is_(True))
            .order_by(UserMapping.created_at.desc(), UserMapping.id.desc())
        )
    ).all()
    first_problem: StartProblem | None = None
    for card, _linked_at in rows:
        parent = await db.get(EvCard, card.parent_id_tag) if card.parent_id_tag else None
        problem = card_problem(
            CardFacts.model_validate(card),
            CardFacts.model_validate(parent) if parent else None,
            now,
        )
        if problem is None:
            return card.id_tag
        first_problem = first_problem or problem
    raise DriverStartError(first_problem or NO_CARD)


# -- start ---------------------------------------------------------------------------------------


async def _workflow_exists(client: Client, workflow_id: str) -> bool:
    try:
        await client.get_workflow_handle(workflow_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


async def _check_charger(db: AsyncSession, ctx: ServiceContext, cb: str, connector: int) -> None:
    charger = await db.get(Charger, cb)
    if charger is None or charger.decommissioned_at is not None:
        raise NotFound(f"no charger {cb!r}")
    if connector < 1 or await db.get(Connector, (cb, connector)) is None:
        raise invalid("connector_id", f"charger {cb!r} has no connector {connector}")
    states = await connector_availability(
        db, [cb], heartbeat_interval_s=ctx.settings.heartbeat_interval_s
    )
    problem = connector_problem(states.get(cb, {}).get(connector, "offline"))
    if problem is not None:
        raise DriverStartError(problem)


async def _first_answer(client: Client, workflow_id: str, wait_s: float) -> SessionStatus | None:
    """The session once the card check and the charger answered (or the wait ran out)."""
    handle = client.get_workflow_handle(workflow_id)
    deadline = time.monotonic() + wait_s
    status: SessionStatus | None = None
    while True:
        try:
            status = await handle.query(QUERY_STATUS, result_type=SessionStatus)
        except RPCError:
            status = None  # not picked up by a worker yet
        answered = status is not None and (
            status.state not in ("requested", "pre_authorized") or status.remote_start is not None
        )
        if answered or time.monotonic() >= deadline:
            return status
        await asyncio.sleep(POLL_S)


async def start_session(
    ctx: ServiceContext,
    actor: Actor,
    user_id: str,
    *,
    charge_box_id: str,
    connector_id: int,
    client_request_id: str,
    wait_s: float = START_WAIT_S,
) -> dict[str, Any]:
    """Answers ``{workflow_id, state, remote_start, replayed, answered}``; raises
    :class:`DriverStartError` for every refusal (card, charger, connector, charger's answer)."""
    workflow_id = driver_workflow_id(user_id, charge_box_id, client_request_id)
    try:
        client = await ctx.temporal()
        replayed = await _workflow_exists(client, workflow_id)
    except (RPCError, OSError, RuntimeError) as exc:
        raise Unavailable("the session service cannot be reached; try again") from exc
    if not replayed:
        async with ctx.sessions() as db:
            id_tag = await pick_card(db, user_id, datetime.now(UTC))
            await _check_charger(db, ctx, charge_box_id, connector_id)
        try:
            await client.start_workflow(
                SESSION_WORKFLOW,
                SessionInput(
                    charge_box_id=charge_box_id,
                    id_tag=id_tag,
                    connector_id=connector_id,
                    origin="remote",
                    **ctx.settings.session_timers(),
                ),
                id=workflow_id,
                task_queue=ctx.settings.temporal_task_queue,
                # Never a second execution for the same request, even once the first is over.
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            )
        except WorkflowAlreadyStartedError:
            replayed = True  # a concurrent request with the same id won the race
        else:
            async with ctx.sessions() as db, db.begin():
                add_audit(
                    db,
                    actor.id,
                    "session.remote_start",
                    subject=workflow_id,
                    source=actor.source,
                    details={"charge_box_id": charge_box_id, "connector_id": connector_id},
                )
    status = await _first_answer(client, workflow_id, wait_s)
    if status is not None and status.state == "rejected":
        raise DriverStartError(rejection_problem(status.end_reason))
    answered = status is not None and status.state not in ("requested", "pre_authorized")
    answered = answered or (status is not None and status.remote_start is not None)
    return {
        "workflow_id": workflow_id,
        "state": status.state if status else "requested",
        "remote_start": status.remote_start if status else None,
        "replayed": replayed,
        "answered": answered,
    }


# -- stop ----------------------------------------------------------------------------------------


async def own_session(db: AsyncSession, user_id: str, workflow_id: str) -> ChargingSession:
    row = await db.scalar(
        select(ChargingSession).where(
            ChargingSession.workflow_id == workflow_id, ChargingSession.user_id == user_id
        )
    )
    if row is None:
        raise NotFound("session not found")
    return row


async def stop_session(
    ctx: ServiceContext, actor: Actor, user_id: str, workflow_id: str
) -> dict[str, Any]:
    """Answers ``{workflow_id, state, accepted, message}``. A session already stopping or over
    answers ``accepted: true`` with its state (a retried stop is not an error)."""
    async with ctx.sessions() as db:
        row = await own_session(db, user_id, workflow_id)
    running = {p.value for p in TRANSACTION_PHASES}
    if row.state in ("requested", "pre_authorized"):
        raise DriverStartError(
            StartProblem(409, "SESSION_NOT_STARTED", "the charger has not started charging yet")
        )
    if row.state not in running:
        return {
            "workflow_id": workflow_id,
            "state": row.state,
            "accepted": True,
            "message": f"the session is {row.state}",
        }
    try:
        client = await ctx.temporal()
        result = await client.get_workflow_handle(workflow_id).execute_update(
            UPDATE_REMOTE_STOP,
            RemoteStopInput(requested_by=actor.id, reason="driver"),
            result_type=RemoteStopResult,
        )
    except WorkflowUpdateFailedError as exc:  # the validator: no transaction running any more
        return {
            "workflow_id": workflow_id,
            "state": row.state,
            "accepted": True,
            "message": str(exc.cause or exc)[:200],
        }
    except (RPCError, OSError, RuntimeError) as exc:
        raise Unavailable("the session service cannot be reached; try again") from exc
    async with ctx.sessions() as db, db.begin():
        add_audit(
            db,
            actor.id,
            "session.remote_stop",
            subject=workflow_id,
            source=actor.source,
            details={"reason": "driver", "accepted": result.accepted, "message": result.message},
        )
    if not result.accepted:
        raise DriverStartError(
            StartProblem(409, "CHARGER_REFUSED", f"the charger refused to stop ({result.message})")
        )
    return {
        "workflow_id": workflow_id,
        "state": "stopping",
        "accepted": True,
        "message": result.message,
    }


__all__ = [
    "CLIENT_REQUEST_ID_PATTERN",
    "DriverStartError",
    "driver_workflow_id",
    "own_session",
    "pick_card",
    "start_session",
    "stop_session",
]
