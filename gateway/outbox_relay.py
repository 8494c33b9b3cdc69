"""The outbox relay: gateway_outbox rows → signal-with-start on the workflow each row's kind is
routed to (``gateway/event_routes.py``; the relay itself knows no workflow).

Order is kept per workflow (a row is only claimed when no older undelivered row of the same
workflow exists) and work runs in parallel across workflows (``concurrency`` delivery loops).
``FOR UPDATE SKIP LOCKED`` makes the claim safe with several gateways: the row being delivered
stays locked, and its successors are not claimable until it is marked delivered, so two
processes never deliver the same row, nor one workflow's rows out of order.

Failures (Temporal down, timeouts) increment ``attempts``, record ``last_error`` and back the
workflow off exponentially in this process; nothing is lost. Inserts wake the relay through
:meth:`OutboxRelay.wake`; a poll is the fallback (and covers rows written by other processes).

A route with ``may_restart`` (``transaction_started``, the generic kinds) may (re)start a closed
workflow id: a start must always reach a workflow (a tap's workflow that expired before the
charger's late StartTransaction runs again). The others (``transaction_stopped``,
``meter_progress``, ``connector_status``…) must never resurrect a finished workflow: when it is
closed they are marked delivered with a note. A delivery is at least once — the gateway may die
after Temporal took a signal and before the row is marked — so a restarting route must only be
one whose redelivery to a closed id is harmless: a ``transaction_started`` cannot be redelivered
to a closed session, since its session's later rows (the stop) wait behind it.

A route may name kinds that supersede it (``Route.superseded_by``): a session's meter progress
is not signalled when a later progress or its stop already waits behind it (marked delivered with
a note), so a backlog after an outage costs Temporal one signal per session, not one per sample.

A kind with no route is never claimed: it was written by a newer gateway during a rolling
upgrade, and this relay does not guess what it means (it would otherwise start a phantom
workflow). The row waits — with its workflow's later rows behind it — for a gateway that knows
it; :meth:`OutboxRelay.unknown_backlog` reports such rows (count and age per kind) and the relay
logs each unknown kind once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import String, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from config.settings import Settings
from db.engine import SessionFactory
from gateway import event_routes
from gateway.temporal_link import TemporalLink
from observability import tracing
from observability.metrics import OUTBOX_DELIVERIES

log = logging.getLogger(__name__)

_CLAIM = text(
    """
    SELECT o.id, o.workflow_id, o.kind, o.payload, o.attempts,
           -- what already waits behind it (routes with ``superseded_by``); the pending index
           ARRAY(SELECT DISTINCT n.kind FROM gateway_outbox n
                 WHERE n.workflow_id = o.workflow_id AND n.delivered_at IS NULL AND n.id > o.id)
             AS later_kinds
    FROM gateway_outbox o
    WHERE o.delivered_at IS NULL
      AND o.kind = ANY(:known)
      AND NOT (o.workflow_id = ANY(:skip))
      AND NOT EXISTS (
        SELECT 1 FROM gateway_outbox p
        WHERE p.workflow_id = o.workflow_id AND p.delivered_at IS NULL AND p.id < o.id)
    ORDER BY o.id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
    """
).bindparams(bindparam("skip", type_=ARRAY(String)), bindparam("known", type_=ARRAY(String)))

_UNKNOWN = text(
    """
    SELECT kind, count(*) AS rows, min(created_at) AS oldest,
           EXTRACT(EPOCH FROM now() - min(created_at)) AS age_s
    FROM gateway_outbox
    WHERE delivered_at IS NULL AND NOT (kind = ANY(:known))
    GROUP BY kind
    ORDER BY kind
    """
).bindparams(bindparam("known", type_=ARRAY(String)))


@dataclass(frozen=True)
class UnknownKind:
    """Undelivered rows of a kind this gateway has no route for."""

    kind: str
    rows: int
    age_s: float


_DELIVERED = text(
    "UPDATE gateway_outbox SET delivered_at = now(), attempts = attempts + 1, last_error = :note "
    "WHERE id = :id"
)
_FAILED = text(
    "UPDATE gateway_outbox SET attempts = attempts + 1, last_error = :error WHERE id = :id"
)


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
        self._unknown_logged: set[str] = set()
        self._unknown_checked = 0.0
        self.unknown_check_interval_s = 60.0

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
            await self._check_unknown()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll)

    def _skip_list(self) -> list[str]:
        now = time.monotonic()
        for workflow_id in [w for w, until in self._backoff.items() if until <= now]:
            del self._backoff[workflow_id]
        return list(self._backoff)

    async def _deliver_one(self, client: Client) -> bool:
        async with self._sf.begin() as s:
            row = (
                await s.execute(
                    _CLAIM, {"skip": self._skip_list(), "known": event_routes.known_kinds()}
                )
            ).first()
            if row is None:
                return False
            route = event_routes.route_for(row.kind)
            if route is not None and route.superseded_by & set(row.later_kinds or ()):
                # A later row of the same workflow carries newer information: this one is not
                # signalled (after an outage, a session's queued progress collapses into its
                # newest progress or its stop).
                await s.execute(
                    _DELIVERED, {"id": row.id, "note": "superseded by a later row; not signalled"}
                )
                OUTBOX_DELIVERIES.labels(row.kind, "superseded").inc()
                return True
            note: str | None = None
            try:
                # The frame's trace (stored in the row) continues here and, through the Temporal
                # interceptor, into the workflow.
                trace = row.payload.get("trace") if isinstance(row.payload, dict) else None
                with tracing.span(
                    f"outbox {row.kind}",
                    parent=trace if isinstance(trace, dict) else None,
                    attributes={"polaris.workflow_id": row.workflow_id, "outbox.id": row.id},
                ):
                    await self._signal(client, row.id, row.workflow_id, row.kind, row.payload)
            except WorkflowAlreadyStartedError:
                note = "workflow already closed; event dropped"
                OUTBOX_DELIVERIES.labels(row.kind, "dropped").inc()
            except Exception as exc:
                OUTBOX_DELIVERIES.labels(row.kind, "failed").inc()
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
            if note is None:
                OUTBOX_DELIVERIES.labels(row.kind, "delivered").inc()
            return True

    async def unknown_backlog(self) -> list[UnknownKind]:
        """Undelivered rows whose kind this gateway cannot route (count and age per kind)."""
        async with self._sf() as s:
            rows = (await s.execute(_UNKNOWN, {"known": event_routes.known_kinds()})).all()
        return [UnknownKind(r.kind, int(r.rows), float(r.age_s)) for r in rows]

    async def _check_unknown(self) -> None:
        """Now and then, while idle: log each unknown kind once (they are left for a newer
        gateway, never guessed at)."""
        now = time.monotonic()
        if self._unknown_checked and now - self._unknown_checked < self.unknown_check_interval_s:
            return
        self._unknown_checked = now
        try:
            backlog = await self.unknown_backlog()
        except Exception as exc:
            log.warning("outbox relay cannot read the unknown-kind backlog: %r", exc)
            return
        for unknown in backlog:
            if unknown.kind in self._unknown_logged:
                continue
            self._unknown_logged.add(unknown.kind)
            log.warning(
                "outbox kind %r has no route in this gateway: %d row(s) left for a newer "
                "gateway (oldest %.0fs); upgrade the gateways (docs/upgrading.md)",
                unknown.kind,
                unknown.rows,
                unknown.age_s,
            )

    async def _signal(
        self, client: Client, row_id: int, workflow_id: str, kind: str, payload: dict[str, Any]
    ) -> None:
        route = event_routes.route_for(kind)
        if route is None:  # the claim only takes known kinds; a route removed meanwhile
            raise LookupError(f"no route for outbox kind {kind!r}")
        policy = (
            WorkflowIDReusePolicy.ALLOW_DUPLICATE
            if route.may_restart
            else WorkflowIDReusePolicy.REJECT_DUPLICATE
        )
        await client.start_workflow(
            route.workflow_type,
            route.start_input(payload, self._settings),
            id=workflow_id,
            task_queue=self._settings.temporal_task_queue,
            start_signal=route.signal,
            start_signal_args=[route.signal_arg(row_id, payload)],
            id_reuse_policy=policy,
            rpc_timeout=self._rpc_timeout,
        )
