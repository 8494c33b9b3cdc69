"""Activities of the outgoing webhooks: dispatch platform events to deliveries, wait for new
events, and make one signed HTTP attempt (docs/webhooks.md).

Idempotency: a delivery is unique per ``(endpoint, event)`` and inserted in the transaction that
moves the dispatcher's cursor; an attempt row is unique per ``(delivery, chain, attempt)``; the
bookkeeping of an attempt (delivery status, the endpoint's failure counters) is applied only
while the delivery is still pending in that chain, so a retried activity counts nothing twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from standardwebhooks import Webhook
from temporalio import activity
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from config.settings import Settings, libpq_url
from db.audit import add_audit
from db.billing_models import AUDIENCE_OPERATORS
from db.engine import SessionFactory
from db.events import EVENTS_CHANNEL
from db.models import PlatformEvent
from db.notifications import WEBHOOK_ENDPOINT_DISABLED, notify
from db.webhook_models import (
    DELIVERY_DELIVERED,
    DELIVERY_FAILED,
    DELIVERY_PENDING,
    WebhookAttempt,
    WebhookDelivery,
    WebhookDispatchCursor,
    WebhookEndpoint,
)
from domain.webhooks import Cursor, advance, envelope, forbidden_address, subscribed
from workflows.webhook_messages import (
    ACTIVITY_ATTEMPT_DELIVERY,
    ACTIVITY_DISPATCH_EVENTS,
    ACTIVITY_WAIT_FOR_EVENTS,
    WEBHOOK_DELIVERY_WORKFLOW,
    AttemptInput,
    AttemptResult,
    DeliveryInput,
    DispatchEventsInput,
    DispatchEventsResult,
    Schedule,
    WaitForEventsInput,
    delivery_workflow_id,
)

log = logging.getLogger("polaris.webhooks")

SYSTEM_ACTOR = "system:webhooks"
GAP_TTL = timedelta(minutes=5)
MAX_RESPONSE_BODY = 4096
USER_AGENT = "Polaris-Webhooks/1"


def _now() -> datetime:
    return datetime.now(UTC)


def new_delivery_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def schedule_of(settings: Settings) -> Schedule:
    return Schedule(
        first_delay_s=settings.webhook_retry_first_delay_s,
        max_delay_s=settings.webhook_retry_max_delay_s,
        give_up_after_s=settings.webhook_retry_give_up_after_s,
    )


async def start_delivery(
    client: Client, settings: Settings, task_queue: str, delivery_id: str, chain: int
) -> str:
    """Start the chain's workflow (a second start of the same chain is a no-op); returns its id."""
    workflow_id = delivery_workflow_id(delivery_id, chain)
    with contextlib.suppress(WorkflowAlreadyStartedError):  # this chain ran already
        await client.start_workflow(
            WEBHOOK_DELIVERY_WORKFLOW,
            DeliveryInput(
                delivery_id=delivery_id,
                chain=chain,
                schedule=schedule_of(settings),
                timeout_s=settings.webhook_timeout_s,
            ),
            id=workflow_id,
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    return workflow_id


async def mark_started(db: AsyncSession, delivery_id: str, chain: int, workflow_id: str) -> None:
    await db.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.chain == chain)
        .values(workflow_id=workflow_id)
    )


# -- where a webhook may go -------------------------------------------------------------------


class TargetRefused(Exception):
    """The URL's host is (or resolves to) an address webhooks may not reach."""


async def resolve_target(url: str, *, allow_private: bool) -> list[str]:
    """The addresses the URL's host resolves to, all of them allowed; else :class:`TargetRefused`.

    Checked when an endpoint's URL is set and again before every attempt (a name may be
    re-pointed at an internal address after it was accepted: DNS rebinding); the attempt then
    connects to the address checked here, never to a second lookup's answer."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetRefused(f"{host} does not resolve ({exc})") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise TargetRefused(f"{host} does not resolve")
    if not allow_private:
        for address in addresses:
            reason = forbidden_address(address.split("%", 1)[0])
            if reason is not None:
                raise TargetRefused(
                    f"{host} resolves to {address}, a {reason} address "
                    "(POLARIS_WEBHOOKS_ALLOW_PRIVATE_TARGETS is off)"
                )
    return addresses


def _pinned(url: str, address: str) -> tuple[str, str]:
    """The URL with its host replaced by ``address``, and the Host header to send."""
    parts = urlsplit(url)
    host = f"[{address}]" if ":" in address else address
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    host_header = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, "")), host_header


def signature_header(secrets: list[str], msg_id: str, at: datetime, body: str) -> str:
    """``v1,<base64>`` per secret, space-separated (Standard Webhooks): during a rotation's
    overlap the new secret's signature comes first, then the old one's."""
    return " ".join(Webhook(secret).sign(msg_id, at, body) for secret in secrets)


def signing_secrets(endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    out = [endpoint.secret]
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret and expires is not None and expires > now:
        out.append(endpoint.previous_secret)
    return out


class WebhookActivities:
    def __init__(
        self, settings: Settings, session_factory: SessionFactory, client: Client | None = None
    ) -> None:
        self._settings = settings
        self._sessions = session_factory
        self._client = client

    # -- dispatch -----------------------------------------------------------------------------

    @activity.defn(name=ACTIVITY_DISPATCH_EVENTS)
    async def dispatch_events(self, input: DispatchEventsInput) -> DispatchEventsResult:
        now = _now()
        async with self._sessions() as db, db.begin():
            cursor = await self._cursor(db, input.name)
            gaps = {int(k): datetime.fromisoformat(v) for k, v in cursor.gaps.items()}
            condition = PlatformEvent.id > cursor.last_event_id
            if gaps:
                condition = condition | PlatformEvent.id.in_(list(gaps))
            events = (
                await db.execute(
                    select(PlatformEvent.id, PlatformEvent.type)
                    .where(condition)
                    .order_by(PlatformEvent.id)
                    .limit(input.batch_size)
                )
            ).all()
            endpoints = (
                await db.execute(
                    select(
                        WebhookEndpoint.id,
                        WebhookEndpoint.event_types,
                        WebhookEndpoint.since_event_id,
                    ).where(WebhookEndpoint.enabled)
                )
            ).all()
            rows = [
                {
                    "id": new_delivery_id(),
                    "endpoint_id": endpoint_id,
                    "event_id": event_id,
                    "event_type": event_type,
                }
                for event_id, event_type in events
                for endpoint_id, patterns, since in endpoints
                if event_id > since and subscribed(list(patterns), event_type)
            ]
            if rows:
                await db.execute(
                    insert(WebhookDelivery)
                    .values(rows)
                    .on_conflict_do_nothing(constraint="uq_webhook_deliveries_endpoint_event")
                )
            moved = advance(
                Cursor(cursor.last_event_id, gaps),
                [event_id for event_id, _ in events],
                now,
                GAP_TTL,
            )
            cursor.last_event_id = moved.last_id
            cursor.gaps = {str(k): v.isoformat() for k, v in moved.gaps.items()}
            cursor.updated_at = now
        started = await self._start_pending(input.batch_size)
        return DispatchEventsResult(
            events=len(events),
            deliveries=len(rows),
            started=started,
            more=len(events) >= input.batch_size,
            last_event_id=moved.last_id,
        )

    async def _cursor(self, db: AsyncSession, name: str) -> WebhookDispatchCursor:
        row = await db.scalar(
            select(WebhookDispatchCursor)
            .where(WebhookDispatchCursor.name == name)
            .with_for_update()
        )
        if row is not None:
            return row
        # First run: from the oldest endpoint's start, or from now when there is none.
        oldest = await db.scalar(
            select(func.min(WebhookEndpoint.since_event_id)).where(WebhookEndpoint.enabled)
        )
        start = (
            oldest if oldest is not None else await db.scalar(select(func.max(PlatformEvent.id)))
        )
        await db.execute(
            insert(WebhookDispatchCursor)
            .values(name=name, last_event_id=start or 0, gaps={})
            .on_conflict_do_nothing()
        )
        row = await db.scalar(
            select(WebhookDispatchCursor)
            .where(WebhookDispatchCursor.name == name)
            .with_for_update()
        )
        assert row is not None
        return row

    async def _start_pending(self, limit: int) -> int:
        """Start the workflow of every delivery chain not started yet (new ones, and any whose
        start failed before)."""
        if self._client is None:
            raise RuntimeError("the dispatch activity needs a Temporal client")
        async with self._sessions() as db:
            todo = (
                await db.execute(
                    select(WebhookDelivery.id, WebhookDelivery.chain)
                    .where(
                        WebhookDelivery.workflow_id.is_(None),
                        WebhookDelivery.status == DELIVERY_PENDING,
                    )
                    .order_by(WebhookDelivery.created_at)
                    .limit(limit)
                )
            ).all()
        task_queue = activity.info().task_queue
        for delivery_id, chain in todo:
            workflow_id = await start_delivery(
                self._client, self._settings, task_queue, delivery_id, chain
            )
            async with self._sessions() as db, db.begin():
                await mark_started(db, delivery_id, chain, workflow_id)
        return len(todo)

    @activity.defn(name=ACTIVITY_WAIT_FOR_EVENTS)
    async def wait_for_events(self, input: WaitForEventsInput) -> bool:
        """LISTEN on ``polaris_events`` until an event is committed (True) or ``max_wait_s``
        passes (False); a poll every ``poll_s`` covers a commit that came before the LISTEN."""
        url = libpq_url(self._settings.require_database_url())
        deadline = time.monotonic() + input.max_wait_s
        poll = self._settings.webhook_dispatch_poll_s
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute(f"LISTEN {EVENTS_CHANNEL}")
            while time.monotonic() < deadline:
                activity.heartbeat()
                cur = await conn.execute(
                    "SELECT EXISTS (SELECT 1 FROM platform_events WHERE id > %s)",
                    (input.after_id,),
                )
                found = await cur.fetchone()
                if found is not None and found[0]:
                    return True
                async for _ in conn.notifies(timeout=poll, stop_after=1):
                    return True
        return False

    # -- delivery -----------------------------------------------------------------------------

    @activity.defn(name=ACTIVITY_ATTEMPT_DELIVERY)
    async def attempt_delivery(self, input: AttemptInput) -> AttemptResult:
        async with self._sessions() as db:
            delivery = await db.get(WebhookDelivery, input.delivery_id)
            if delivery is None or delivery.chain != input.chain:
                return AttemptResult(outcome="gone", error="replaced by another chain")
            if delivery.status != DELIVERY_PENDING:
                return AttemptResult(outcome="gone", error=f"already {delivery.status}")
            endpoint = await db.get(WebhookEndpoint, delivery.endpoint_id)
            event = await db.get(PlatformEvent, delivery.event_id)
        if endpoint is None or not endpoint.enabled or event is None:
            why = "the endpoint is disabled" if endpoint is not None else "the endpoint is gone"
            if event is None:
                why = "the event is gone"
            await self._finish_without_attempt(input, why)
            return AttemptResult(outcome="gone", error=why)
        started = _now()
        body = json.dumps(
            envelope(event.type, event.id, event.occurred_at, event.payload),
            separators=(",", ":"),
            ensure_ascii=False,
            default=str,
        )
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": delivery.id,
            "webhook-timestamp": str(int(started.timestamp())),
            "webhook-signature": signature_header(
                signing_secrets(endpoint, started), delivery.id, started, body
            ),
        }
        request = {"method": "POST", "url": endpoint.url, "headers": headers, "body": body}
        response, error, duration_ms = await self._post(endpoint.url, headers, body)
        status = response["status"] if response else None
        ok = status is not None and 200 <= status < 300
        await self._record(input, started, request, response, error, ok, duration_ms)
        if ok:
            return AttemptResult(outcome="delivered", status_code=status)
        return AttemptResult(outcome="failed", status_code=status, error=error)

    async def _post(
        self, url: str, headers: dict[str, str], body: str
    ) -> tuple[dict[str, Any] | None, str | None, int]:
        clock = time.monotonic()
        try:
            addresses = await resolve_target(
                url, allow_private=self._settings.webhooks_allow_private_targets
            )
        except TargetRefused as exc:
            return None, f"refused: {exc}", 0
        target, host = _pinned(url, addresses[0])
        parts = urlsplit(url)
        extensions = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
        try:
            async with httpx.AsyncClient(
                timeout=self._settings.webhook_timeout_s, follow_redirects=False
            ) as http:
                answer = await http.post(
                    target,
                    content=body.encode(),
                    headers={**headers, "host": host},
                    extensions=extensions,
                )
        except httpx.TimeoutException:
            took = int((time.monotonic() - clock) * 1000)
            return None, f"timed out after {self._settings.webhook_timeout_s:g} s", took
        except httpx.HTTPError as exc:
            took = int((time.monotonic() - clock) * 1000)
            return None, f"{type(exc).__name__}: {exc}"[:500], took
        took = int((time.monotonic() - clock) * 1000)
        text = answer.text
        response = {
            "status": answer.status_code,
            "headers": dict(answer.headers),
            "body": text[:MAX_RESPONSE_BODY],
            "truncated": len(text) > MAX_RESPONSE_BODY,
        }
        error = None if 200 <= answer.status_code < 300 else f"HTTP {answer.status_code}"
        return response, error, took

    async def _record(
        self,
        input: AttemptInput,
        started: datetime,
        request: dict[str, Any],
        response: dict[str, Any] | None,
        error: str | None,
        ok: bool,
        duration_ms: int,
    ) -> None:
        now = _now()
        values = {
            "request": request,
            "response_status": response["status"] if response else None,
            "response": response,
            "error": error,
            "ok": ok,
            "duration_ms": duration_ms,
            "started_at": started,
        }
        async with self._sessions() as db, db.begin():
            await db.execute(
                insert(WebhookAttempt)
                .values(
                    delivery_id=input.delivery_id,
                    chain=input.chain,
                    attempt=input.attempt,
                    **values,
                )
                .on_conflict_do_update(
                    constraint="uq_webhook_attempts_delivery_chain_attempt", set_=values
                )
            )
            delivery = await db.scalar(
                select(WebhookDelivery)
                .where(WebhookDelivery.id == input.delivery_id)
                .with_for_update()
            )
            if delivery is None or delivery.chain != input.chain:
                return
            delivery.attempts = (
                await db.scalar(
                    select(func.count())
                    .select_from(WebhookAttempt)
                    .where(WebhookAttempt.delivery_id == input.delivery_id)
                )
                or 0
            )
            delivery.last_status_code = response["status"] if response else None
            delivery.last_error = error
            if delivery.status != DELIVERY_PENDING:
                return  # a retried activity: counted already
            endpoint = await db.scalar(
                select(WebhookEndpoint)
                .where(WebhookEndpoint.id == delivery.endpoint_id)
                .with_for_update()
            )
            if ok:
                delivery.status, delivery.finished_at = DELIVERY_DELIVERED, now
                if endpoint is not None:
                    endpoint.consecutive_failures = 0
                    endpoint.failing_since = None
                return
            if input.final:
                delivery.status, delivery.finished_at = DELIVERY_FAILED, now
            if endpoint is None:
                return
            if endpoint.failing_since is None:
                endpoint.failing_since = started
            if input.final:
                endpoint.consecutive_failures += 1
            await self._maybe_disable(db, endpoint, now)

    async def _maybe_disable(
        self, db: AsyncSession, endpoint: WebhookEndpoint, now: datetime
    ) -> None:
        if not endpoint.enabled:
            return
        settings = self._settings
        reason = None
        if endpoint.consecutive_failures >= settings.webhook_disable_after_failures:
            reason = f"{endpoint.consecutive_failures} deliveries in a row failed"
        elif endpoint.failing_since is not None and now - endpoint.failing_since >= timedelta(
            hours=settings.webhook_disable_after_hours
        ):
            reason = f"every attempt failed since {endpoint.failing_since.isoformat()}"
        if reason is None:
            return
        endpoint.enabled = False
        endpoint.disabled_at = now
        endpoint.disabled_reason = reason
        endpoint.updated_at = now
        add_audit(
            db,
            SYSTEM_ACTOR,
            "webhook_endpoint.disabled",
            subject=f"webhook_endpoint:{endpoint.id}",
            source="worker",
            details={"reason": reason, "url": endpoint.url},
        )
        # Its owner's inbox; an endpoint made from the CLI has no user behind it: the operators'.
        owner = endpoint.owner_user_id
        recipient: dict[str, Any] = (
            {"audience": AUDIENCE_OPERATORS}
            if not owner or owner == AUDIENCE_OPERATORS
            else {"user_id": owner}
        )
        await notify(
            db,
            **recipient,
            kind=WEBHOOK_ENDPOINT_DISABLED,
            dedupe_key=f"webhook-endpoint-disabled:{endpoint.id}:{int(now.timestamp())}",
            title=f"Webhook endpoint {endpoint.url} was disabled",
            data={"endpoint_id": endpoint.id, "url": endpoint.url, "reason": reason},
        )
        log.warning("webhook endpoint %s disabled: %s", endpoint.id, reason)

    async def _finish_without_attempt(self, input: AttemptInput, why: str) -> None:
        async with self._sessions() as db, db.begin():
            await db.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.id == input.delivery_id,
                    WebhookDelivery.chain == input.chain,
                    WebhookDelivery.status == DELIVERY_PENDING,
                )
                .values(status=DELIVERY_FAILED, finished_at=_now(), last_error=why)
            )


__all__ = [
    "SYSTEM_ACTOR",
    "TargetRefused",
    "WebhookActivities",
    "mark_started",
    "new_delivery_id",
    "resolve_target",
    "schedule_of",
    "signature_header",
    "signing_secrets",
    "start_delivery",
]
