"""The outbox relay: gateway_outbox rows → signal-with-start on the session workflows.

Order is kept per workflow (a row is only claimed when no older undelivered row of the same
workflow exists) and work runs in parallel across workflows (``concurrency`` delivery loops).
``FOR UPDATE SKIP LOCKED`` makes the claim safe with several gateways: the row being delivered
stays locked, and its successors are not claimable until it is marked delivered, so two
processes never deliver the same row, nor one workflow's rows out of order.

Failures (Temporal down, timeouts) increment ``attempts``, record ``last_error`` and back the
workflow off exponentially in this process; nothing is lost. Inserts wake the relay through
:meth:`OutboxRelay.wake`; a poll is the fallback (and covers rows written by other processes).

``transaction_started`` and ``transaction_stopped`` may (re)start a closed workflow id: a start or
a late stop must always reach a workflow. ``meter_progress`` and ``connector_status`` must never
resurrect a finished session: when the workflow is closed they are marked delivered with a note.

A row whose payload names its workflow (``{"workflow": {"type", "input"}, "signal": {...}}``) is
delivered as a signal-with-start of that type with that input (``kind`` is the signal), whatever
the type: the local-list connect trigger and the site load trigger use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import String, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from config.settings import Settings
from db.engine import SessionFactory
from gateway.temporal_link import TemporalLink
from workflows.messages import (
    SESSION_WORKFLOW,
    SIGNAL_CONNECTOR_STATUS,
    SIGNAL_METER_PROGRESS,
    SIGNAL_TRANSACTION_CLOSED,
    SIGNAL_TRANSACTION_STARTED,
    SIGNAL_TRANSACTION_STOPPED,
    ConnectorStatus,
    MeterProgress,
    SessionInput,
    TransactionClosed,
    TransactionStarted,
    TransactionStopped,
)

log = logging.getLogger(__name__)

SIGNAL_MODELS: dict[str, type[BaseModel]] = {
    SIGNAL_TRANSACTION_STARTED: TransactionStarted,
    SIGNAL_METER_PROGRESS: MeterProgress,
    SIGNAL_TRANSACTION_STOPPED: TransactionStopped,
    SIGNAL_CONNECTOR_STATUS: ConnectorStatus,
    SIGNAL_TRANSACTION_CLOSED: TransactionClosed,
}
MAY_RESTART = frozenset({SIGNAL_TRANSACTION_STARTED, SIGNAL_TRANSACTION_STOPPED})

_CLAIM = text(
    """
    SELECT o.id, o.workflow_id, o.kind, o.payload, o.attempts
    FROM gateway_outbox o
    WHERE o.delivered_at IS NULL
      AND NOT (o.workflow_id = ANY(:skip))
      AND NOT EXISTS (
        SELECT 1 FROM gateway_outbox p
        WHERE p.workflow_id = o.workflow_id AND p.delivered_at IS NULL AND p.id < o.id)
    ORDER BY o.id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
    """
).bindparams(bindparam("skip", type_=ARRAY(String)))

_DELIVERED = text(
    "UPDATE gateway_outbox SET delivered_at = now(), attempts = attempts + 1, last_error = :note "
    "WHERE id = :id"
)
_FAILED = text(
    "UPDATE gateway_outbox SET attempts = attempts + 1, last_error = :error WHERE id = :id"
)


def signal_arg(kind: str, row_id: int, payload: dict[str, Any]) -> BaseModel | dict[str, Any]:
    fields = {**payload.get("signal", {}), "event_id": row_id}
    model = SIGNAL_MODELS.get(kind)
    return model.model_validate(fields) if model else fields


class OutboxRelay:
    def __init__(
        self,
        sf: SessionFactory,
        link: TemporalLink,
        settings: Settings,
        *,
        concurrency: int = 8,
        poll_interval_s: float = 2.0,
        rpc_timeout_s: float = 10.0,
        max_backoff_s: float = 60.0,
    ) -> None:
        self._sf = sf
        self._link = link
        self._settings = settings
        self._concurrency = concurrency
        self._poll = poll_interval_s
        self._rpc_timeout = timedelta(seconds=rpc_timeout_s)
        self._max_backoff = max_backoff_s
        self._wake = asyncio.Event()
        self._stopping = False
        self._backoff: dict[str, float] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._loop(), name=f"outbox-relay-{i}")
            for i in range(self._concurrency)
        ]

    async def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Deliver what can be delivered within the timeout, then stop."""
        self._stopping = True
        self._wake.set()
        if not self._tasks:
            return
        # Without Temporal there is nothing to drain into: the rows wait for the next start.
        timeout = drain_timeout_s if self._link.client is not None else 0
        _done, pending = await asyncio.wait(self._tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _loop(self) -> None:
        client = await self._link.wait()
        while True:
            self._wake.clear()
            try:
                delivered = await self._deliver_one(client)
            except Exception as exc:
                log.warning("outbox relay cannot read the outbox: %r", exc)
                delivered = False
            if delivered:
                continue
            if self._stopping:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll)

    def _skip_list(self) -> list[str]:
        now = time.monotonic()
        for workflow_id in [w for w, until in self._backoff.items() if until <= now]:
            del self._backoff[workflow_id]
        return list(self._backoff)

    async def _deliver_one(self, client: Client) -> bool:
        async with self._sf.begin() as s:
            row = (await s.execute(_CLAIM, {"skip": self._skip_list()})).first()
            if row is None:
                return False
            note: str | None = None
            try:
                await self._signal(client, row.id, row.workflow_id, row.kind, row.payload)
            except WorkflowAlreadyStartedError:
                note = "workflow already closed; event dropped"
            except Exception as exc:
                delay = min(self._max_backoff, 0.5 * 2 ** min(row.attempts, 10))
                self._backoff[row.workflow_id] = time.monotonic() + delay
                await s.execute(_FAILED, {"id": row.id, "error": repr(exc)[:2000]})
                log.warning(
                    "outbox row %s (%s) not delivered, retry in %.1fs: %r",
                    row.id,
                    row.kind,
                    delay,
                    exc,
                )
                return not self._stopping
            await s.execute(_DELIVERED, {"id": row.id, "note": note})
            return True

    async def _signal(
        self, client: Client, row_id: int, workflow_id: str, kind: str, payload: dict[str, Any]
    ) -> None:
        generic = payload.get("workflow")
        if isinstance(generic, dict):
            # A row that names its workflow (type and input): signal-with-start it as told. The
            # relay knows nothing of it (``gateway/local_list_trigger.py`` writes such rows).
            await client.start_workflow(
                str(generic["type"]),
                generic.get("input", {}),
                id=workflow_id,
                task_queue=self._settings.temporal_task_queue,
                start_signal=kind,
                start_signal_args=[{**payload.get("signal", {}), "event_id": row_id}],
                rpc_timeout=self._rpc_timeout,
            )
            return
        start = SessionInput.model_validate(
            {**payload.get("session", {}), **self._settings.session_timers()}
        )
        policy = (
            WorkflowIDReusePolicy.ALLOW_DUPLICATE
            if kind in MAY_RESTART
            else WorkflowIDReusePolicy.REJECT_DUPLICATE
        )
        await client.start_workflow(
            SESSION_WORKFLOW,
            start,
            id=workflow_id,
            task_queue=self._settings.temporal_task_queue,
            start_signal=kind,
            start_signal_args=[signal_arg(kind, row_id, payload)],
            id_reuse_policy=policy,
            rpc_timeout=self._rpc_timeout,
        )
