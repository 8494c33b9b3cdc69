"""Outgoing webhooks: endpoints (operators only), their signing secrets, the delivery log and
manual redelivery (docs/webhooks.md). The API routes and ``polaris webhooks`` call these."""

from __future__ import annotations

import base64
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError

from activities.webhooks import TargetRefused, mark_started, resolve_target, start_delivery
from db.audit import add_audit
from db.models import PlatformEvent
from db.webhook_models import (
    DELIVERY_PENDING,
    DELIVERY_STATUSES,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from domain.webhooks import check_event_types, check_url
from services.actor import Actor
from services.context import ServiceContext
from services.errors import Conflict, InvalidInput, NotFound
from services.validation import invalid
from workflows.webhook_messages import (
    DISPATCHER_NAME,
    SIGNAL_WAKE,
    WEBHOOK_DISPATCHER_WORKFLOW,
    DispatcherInput,
    dispatcher_workflow_id,
)

OPERATORS_INBOX = "operators"  # owner of endpoints made from the CLI (no user behind it)


def new_secret() -> str:
    """``whsec_`` + 32 random bytes in base64: the form the Standard Webhooks libraries take."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


class _EndpointFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("url", check_fields=False)
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else check_url(value)

    @field_validator("event_types", check_fields=False)
    @classmethod
    def _types(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else check_event_types(value)


class NewEndpoint(_EndpointFields):
    url: str = Field(min_length=1, max_length=2000)
    description: str = Field(default="", max_length=500)
    event_types: list[str] = Field(min_length=1, max_length=50)
    enabled: bool = True


class EndpointPatch(_EndpointFields):
    """Fields left out are kept. ``enabled: true`` on a disabled endpoint clears its failures."""

    url: str | None = Field(default=None, min_length=1, max_length=2000)
    description: str | None = Field(default=None, max_length=500)
    event_types: list[str] | None = Field(default=None, min_length=1, max_length=50)
    enabled: bool | None = None


def _owner(actor: Actor) -> str:
    return actor.id.removeprefix("user:") if actor.id.startswith("user:") else OPERATORS_INBOX


def endpoint_dict(ep: WebhookEndpoint) -> dict[str, Any]:
    return {
        "id": ep.id,
        "url": ep.url,
        "description": ep.description,
        "event_types": list(ep.event_types),
        "enabled": ep.enabled,
        "disabled_reason": ep.disabled_reason,
        "disabled_at": ep.disabled_at,
        "owner_user_id": ep.owner_user_id,
        "consecutive_failures": ep.consecutive_failures,
        "failing_since": ep.failing_since,
        "previous_secret_expires_at": ep.previous_secret_expires_at,
        "created_at": ep.created_at,
        "updated_at": ep.updated_at,
    }


async def check_target(ctx: ServiceContext, url: str) -> None:
    """Refuse a URL whose host is or resolves to a non-public address (unless allowed)."""
    try:
        await resolve_target(url, allow_private=ctx.settings.webhooks_allow_private_targets)
    except TargetRefused as exc:
        raise invalid("url", str(exc)) from None


async def _endpoint_or_404(
    db: AsyncSession, endpoint_id: str, *, lock: bool = False
) -> WebhookEndpoint:
    query = select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id)
    if lock:
        query = query.with_for_update()
    ep = await db.scalar(query)
    if ep is None:
        raise NotFound(f"no webhook endpoint {endpoint_id!r}")
    return ep


async def ensure_dispatcher(ctx: ServiceContext, name: str = DISPATCHER_NAME) -> None:
    """Make sure the dispatcher runs and looks now (the first start wins; never fatal: every
    worker also starts it)."""
    try:
        client = await ctx.temporal()
        handle = await client.start_workflow(
            WEBHOOK_DISPATCHER_WORKFLOW,
            DispatcherInput(name=name),
            id=dispatcher_workflow_id(name),
            task_queue=ctx.settings.temporal_task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
        await handle.signal(SIGNAL_WAKE)
    except (RPCError, OSError, RuntimeError):
        pass


async def create_endpoint(ctx: ServiceContext, actor: Actor, new: NewEndpoint) -> dict[str, Any]:
    """The endpoint, with its signing ``secret`` (shown this once)."""
    await check_target(ctx, new.url)
    secret = new_secret()
    async with ctx.sessions() as db, db.begin():
        since = await db.scalar(select(func.coalesce(func.max(PlatformEvent.id), 0)))
        ep = WebhookEndpoint(
            id=f"ep_{uuid.uuid4().hex}",
            url=new.url,
            description=new.description,
            event_types=new.event_types,
            enabled=new.enabled,
            owner_user_id=_owner(actor),
            secret=secret,
            since_event_id=since or 0,
        )
        db.add(ep)
        await db.flush()
        add_audit(
            db,
            actor.id,
            "webhook_endpoint.created",
            subject=f"webhook_endpoint:{ep.id}",
            source=actor.source,
            details=new.model_dump(),
        )
    await ensure_dispatcher(ctx)
    return await show_endpoint(ctx, ep.id) | {"secret": secret}


async def list_endpoints(ctx: ServiceContext) -> list[dict[str, Any]]:
    async with ctx.sessions() as db:
        rows = (
            await db.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.created_at))
        ).all()
    return [endpoint_dict(ep) for ep in rows]


async def show_endpoint(ctx: ServiceContext, endpoint_id: str) -> dict[str, Any]:
    async with ctx.sessions() as db:
        ep = await _endpoint_or_404(db, endpoint_id)
        counts = dict(
            (
                await db.execute(
                    select(WebhookDelivery.status, func.count())
                    .where(WebhookDelivery.endpoint_id == endpoint_id)
                    .group_by(WebhookDelivery.status)
                )
            ).all()
        )
    return endpoint_dict(ep) | {"deliveries": {s: int(counts.get(s, 0)) for s in DELIVERY_STATUSES}}


async def update_endpoint(
    ctx: ServiceContext, actor: Actor, endpoint_id: str, patch: EndpointPatch
) -> dict[str, Any]:
    changes = patch.model_dump(exclude_unset=True)
    for required in ("url", "event_types", "enabled", "description"):
        if required in changes and changes[required] is None:
            raise invalid(required, f"{required} cannot be cleared")
    if "url" in changes:
        await check_target(ctx, changes["url"])
    now = datetime.now(UTC)
    async with ctx.sessions() as db, db.begin():
        ep = await _endpoint_or_404(db, endpoint_id, lock=True)
        before = {k: getattr(ep, k) for k in changes}
        for key, value in changes.items():
            setattr(ep, key, value)
        if changes.get("enabled") is True and before.get("enabled") is False:
            ep.disabled_at = ep.disabled_reason = ep.failing_since = None
            ep.consecutive_failures = 0
        elif changes.get("enabled") is False and before.get("enabled") is True:
            ep.disabled_at, ep.disabled_reason = now, f"disabled by {actor.id}"
        ep.updated_at = now
        add_audit(
            db,
            actor.id,
            "webhook_endpoint.updated",
            subject=f"webhook_endpoint:{ep.id}",
            source=actor.source,
            details={"before": before, "after": changes},
        )
    if changes.get("enabled"):
        await ensure_dispatcher(ctx)
    return await show_endpoint(ctx, endpoint_id)


async def delete_endpoint(ctx: ServiceContext, actor: Actor, endpoint_id: str) -> dict[str, Any]:
    """Gone with its delivery log; deliveries still retrying stop at their next attempt."""
    async with ctx.sessions() as db, db.begin():
        # Its deliveries first, then the endpoint: the order the delivery activity locks them in
        # (a delivery, then its endpoint). Locking the endpoint first and letting the cascade
        # reach the deliveries deadlocked with an attempt being recorded (seen in a full run).
        await db.execute(
            select(WebhookDelivery.id)
            .where(WebhookDelivery.endpoint_id == endpoint_id)
            .order_by(WebhookDelivery.id)
            .with_for_update()
        )
        ep = await _endpoint_or_404(db, endpoint_id, lock=True)
        out = endpoint_dict(ep)
        await db.delete(ep)
        add_audit(
            db,
            actor.id,
            "webhook_endpoint.deleted",
            subject=f"webhook_endpoint:{endpoint_id}",
            source=actor.source,
            details={"url": out["url"]},
        )
    return out


async def rotate_secret(ctx: ServiceContext, actor: Actor, endpoint_id: str) -> dict[str, Any]:
    """A new secret (shown this once); the current one keeps signing too, as a second
    signature, for ``POLARIS_WEBHOOK_SECRET_OVERLAP_HOURS``."""
    secret = new_secret()
    now = datetime.now(UTC)
    overlap = timedelta(hours=ctx.settings.webhook_secret_overlap_hours)
    async with ctx.sessions() as db, db.begin():
        ep = await _endpoint_or_404(db, endpoint_id, lock=True)
        ep.previous_secret, ep.secret = ep.secret, secret
        ep.previous_secret_expires_at = now + overlap if overlap else now
        ep.updated_at = now
        expires = ep.previous_secret_expires_at
        add_audit(
            db,
            actor.id,
            "webhook_endpoint.secret_rotated",
            subject=f"webhook_endpoint:{ep.id}",
            source=actor.source,
            details={"previous_secret_expires_at": expires.isoformat()},
        )
    return {"id": endpoint_id, "secret": secret, "previous_secret_expires_at": expires}


def delivery_dict(d: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": d.id,
        "endpoint_id": d.endpoint_id,
        "event_id": d.event_id,
        "event_type": d.event_type,
        "status": d.status,
        "chain": d.chain,
        "attempts": d.attempts,
        "last_status_code": d.last_status_code,
        "last_error": d.last_error,
        "workflow_id": d.workflow_id,
        "created_at": d.created_at,
        "finished_at": d.finished_at,
    }


def attempt_dict(a: WebhookAttempt) -> dict[str, Any]:
    return {
        "chain": a.chain,
        "attempt": a.attempt,
        "started_at": a.started_at,
        "ok": a.ok,
        "duration_ms": a.duration_ms,
        "request": a.request,
        "response": a.response,
        "error": a.error,
    }


async def list_deliveries(
    ctx: ServiceContext,
    *,
    endpoint_id: str | None = None,
    status: str | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    if status is not None and status not in DELIVERY_STATUSES:
        raise invalid("status", f"one of {', '.join(DELIVERY_STATUSES)}")
    query = select(WebhookDelivery).order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id)
    if endpoint_id is not None:
        query = query.where(WebhookDelivery.endpoint_id == endpoint_id)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    async with ctx.sessions() as db:
        rows = (await db.scalars(query.limit(limit))).all()
    return [delivery_dict(d) for d in rows]


async def show_delivery(ctx: ServiceContext, delivery_id: str) -> dict[str, Any]:
    """The delivery and every attempt (request without secrets, response truncated)."""
    async with ctx.sessions() as db:
        d = await db.get(WebhookDelivery, delivery_id)
        if d is None:
            raise NotFound(f"no webhook delivery {delivery_id!r}")
        attempts = (
            await db.scalars(
                select(WebhookAttempt)
                .where(WebhookAttempt.delivery_id == delivery_id)
                .order_by(WebhookAttempt.chain, WebhookAttempt.attempt)
            )
        ).all()
    return delivery_dict(d) | {"attempts_log": [attempt_dict(a) for a in attempts]}


async def redeliver(ctx: ServiceContext, actor: Actor, delivery_id: str) -> dict[str, Any]:
    """A new attempt chain for a finished delivery (same ``webhook-id``, so a receiver that
    saw it already can tell); 409 while a chain is still running."""
    async with ctx.sessions() as db, db.begin():
        d = await db.scalar(
            select(WebhookDelivery).where(WebhookDelivery.id == delivery_id).with_for_update()
        )
        if d is None:
            raise NotFound(f"no webhook delivery {delivery_id!r}")
        if d.status == DELIVERY_PENDING:
            raise Conflict("this delivery is still being attempted")
        ep = await _endpoint_or_404(db, d.endpoint_id)
        if not ep.enabled:
            raise InvalidInput(
                "the endpoint is disabled: enable it first",
                issues=[{"path": ["endpoint_id"], "message": "the endpoint is disabled"}],
            )
        d.chain += 1
        d.status, d.finished_at, d.workflow_id = DELIVERY_PENDING, None, None
        chain = d.chain
        add_audit(
            db,
            actor.id,
            "webhook_delivery.redelivered",
            subject=f"webhook_delivery:{delivery_id}",
            source=actor.source,
            details={"chain": chain, "endpoint_id": d.endpoint_id},
        )
    try:
        client = await ctx.temporal()
        workflow_id = await start_delivery(
            client, ctx.settings, ctx.settings.temporal_task_queue, delivery_id, chain
        )
        async with ctx.sessions() as db, db.begin():
            await mark_started(db, delivery_id, chain, workflow_id)
    except (RPCError, OSError, RuntimeError):
        pass  # the dispatcher starts chains left unstarted
    return await show_delivery(ctx, delivery_id)


__all__ = [
    "EndpointPatch",
    "NewEndpoint",
    "create_endpoint",
    "delete_endpoint",
    "ensure_dispatcher",
    "list_deliveries",
    "list_endpoints",
    "new_secret",
    "redeliver",
    "rotate_secret",
    "show_delivery",
    "show_endpoint",
    "update_endpoint",
]
