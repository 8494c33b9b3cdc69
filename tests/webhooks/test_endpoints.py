"""Endpoints that keep failing are disabled and their owner told; redelivery starts a new
attempt chain with the same webhook-id; a rotated secret overlaps with the old one; URLs that
point inside the network are refused (SSRF), also when DNS changes after the check."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError
from sqlalchemy import select
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Worker

from activities.webhooks import WebhookActivities, new_delivery_id
from config.settings import Settings
from db.billing_models import Notification
from db.engine import SessionFactory
from db.events import record_event
from db.models import AuditLog
from db.webhook_models import WebhookDelivery, WebhookEndpoint
from domain import events as ev
from services import webhooks
from services.context import ServiceContext
from services.errors import Conflict, InvalidInput
from tests.helpers import eventually
from tests.webhooks.conftest import (
    OPERATOR,
    context,
    deliveries_of,
    running_webhooks,
    webhook_settings,
)
from tests.webhooks.receiver import Receiver, receiver
from workflows.webhook_messages import AttemptInput

pytestmark = pytest.mark.timeout(120)


async def _lost(sf: SessionFactory, n: int) -> int:
    async with sf.begin() as db:
        return await record_event(
            db,
            ev.CARD_LOST,
            {"card_public_id": f"C{n:07d}", "user_id": "u-wh", "lost_at": "2026-11-29T15:00:00Z"},
            user_id="u-wh",
        )


async def test_a_failing_endpoint_is_disabled_its_owner_told_and_redelivery_works(
    base_settings: Settings,
    task_queue: str,
    session_factory: SessionFactory,
    temporal_client: Client,
) -> None:
    """Its own worker, whose activities disable after two failed deliveries in a row."""
    settings = webhook_settings(base_settings, task_queue, webhook_disable_after_failures=2)
    ctx = context(settings, session_factory, temporal_client)
    async with (
        receiver(default="fail") as rx,
        running_webhooks(temporal_client, task_queue, settings, session_factory),
    ):
        endpoint = await webhooks.create_endpoint(
            ctx, OPERATOR, webhooks.NewEndpoint(url=rx.url, event_types=["card.*"])
        )
        try:
            await _disabled_then_redelivered(ctx, session_factory, rx, endpoint["id"])
        finally:
            await webhooks.delete_endpoint(ctx, OPERATOR, endpoint["id"])


async def test_an_endpoint_failing_for_hours_is_disabled(
    base_settings: Settings,
    task_queue: str,
    session_factory: SessionFactory,
    temporal_client: Client,
) -> None:
    """Failing continuously for longer than POLARIS_WEBHOOK_DISABLE_AFTER_HOURS (here a second;
    the retry timers guarantee the last attempt comes later than that) disables the endpoint
    within one delivery, long before the count of failed deliveries would."""
    settings = webhook_settings(
        base_settings,
        task_queue,
        webhook_disable_after_failures=100,
        webhook_disable_after_hours=1 / 3600,
    )
    ctx = context(settings, session_factory, temporal_client)
    async with (
        receiver(default="fail") as rx,
        running_webhooks(temporal_client, task_queue, settings, session_factory),
    ):
        endpoint = await webhooks.create_endpoint(
            ctx, OPERATOR, webhooks.NewEndpoint(url=rx.url, event_types=["card.*"])
        )
        try:
            await _lost(session_factory, 7)

            async def disabled() -> WebhookEndpoint | None:
                async with session_factory() as db:
                    ep = await db.get(WebhookEndpoint, endpoint["id"])
                return ep if ep is not None and not ep.enabled else None

            ep = await eventually(disabled, message="the endpoint to be disabled")
            assert (ep.disabled_reason or "").startswith("every attempt failed since")
            assert ep.consecutive_failures <= 1
            async with session_factory() as db:
                note = await db.scalar(
                    select(Notification).where(
                        Notification.kind == "webhook_endpoint.disabled",
                        Notification.data["endpoint_id"].astext == endpoint["id"],
                    )
                )
            assert note is not None and note.user_id == "webhook-operator"
        finally:
            await webhooks.delete_endpoint(ctx, OPERATOR, endpoint["id"])


async def _disabled_then_redelivered(
    ctx: ServiceContext, sf: SessionFactory, rx: Receiver, endpoint_id: str
) -> None:
    await _lost(sf, 1)
    await _lost(sf, 2)

    async def disabled() -> WebhookEndpoint | None:
        async with sf() as db:
            ep = await db.get(WebhookEndpoint, endpoint_id)
        return ep if ep is not None and not ep.enabled else None

    ep = await eventually(disabled, message="the endpoint to be disabled")
    assert ep.disabled_reason == "2 deliveries in a row failed"
    async with sf() as db:
        notes = (
            await db.scalars(
                select(Notification).where(Notification.kind == "webhook_endpoint.disabled")
            )
        ).all()
        audit = (
            await db.scalars(
                select(AuditLog).where(AuditLog.subject == f"webhook_endpoint:{endpoint_id}")
            )
        ).all()
    [note] = [n for n in notes if n.data["endpoint_id"] == endpoint_id]
    assert note.user_id == "webhook-operator"  # the operator who made it
    assert {a.action for a in audit} >= {"webhook_endpoint.created", "webhook_endpoint.disabled"}

    # Disabled: new events make no delivery; redelivery asks for the endpoint back first.
    await _lost(sf, 3)
    rows = await deliveries_of(sf, endpoint_id)
    assert len(rows) == 2
    with pytest.raises(InvalidInput):
        await webhooks.redeliver(ctx, OPERATOR, rows[0].id)

    # Re-enabled and the receiver healthy: a new chain, same webhook-id, delivered.
    rx.default = "ok"
    enabled = await webhooks.update_endpoint(
        ctx, OPERATOR, endpoint_id, webhooks.EndpointPatch(enabled=True)
    )
    assert enabled["enabled"] and enabled["consecutive_failures"] == 0
    again = await webhooks.redeliver(ctx, OPERATOR, rows[0].id)
    assert again["chain"] == 2 and again["status"] == "pending"

    async def redelivered() -> dict[str, object] | None:
        shown = await webhooks.show_delivery(ctx, rows[0].id)
        return shown if shown["status"] == "delivered" else None

    shown = await eventually(redelivered, message="the redelivery")
    assert shown["workflow_id"].endswith("-r2")
    assert [(a["chain"], a["ok"]) for a in shown["attempts_log"]][-1] == (2, True)
    first = [r for r in rx.received if json.loads(r.body)["id"] == f"evt_{rows[0].event_id}"]
    assert len(first) >= 2 and {r.webhook_id for r in first} == {rows[0].id}


async def test_a_rotated_secret_signs_alongside_the_old_one(
    wh_ctx: ServiceContext, wh_worker: Worker, session_factory: SessionFactory
) -> None:
    async with receiver() as rx:
        endpoint = await webhooks.create_endpoint(
            wh_ctx, OPERATOR, webhooks.NewEndpoint(url=rx.url, event_types=[ev.CARD_LOST])
        )
        old = endpoint["secret"]
        rotated = await webhooks.rotate_secret(wh_ctx, OPERATOR, endpoint["id"])
        new = rotated["secret"]
        assert new != old and rotated["previous_secret_expires_at"] is not None
        # A receiver that knows only the old secret, and one that knows only the new one.
        rx.secrets = [old, new]
        await _lost(session_factory, 9)
        await eventually(lambda: len(rx.received) == 1, message="the delivery")
        [got] = rx.received
        assert got.verified == {old: True, new: True}
        assert len(got.headers["webhook-signature"].split(" ")) == 2
        shown = await webhooks.show_endpoint(wh_ctx, endpoint["id"])
        assert "secret" not in shown and old not in json.dumps(shown, default=str)


async def test_inside_addresses_are_refused_unless_allowed(
    wh_ctx: ServiceContext, session_factory: SessionFactory
) -> None:
    strict = context(
        wh_ctx.settings.model_copy(update={"webhooks_allow_private_targets": False}),
        session_factory,
        wh_ctx.temporal,  # type: ignore[arg-type]
    )
    for url in (
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://10.1.2.3/hook",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
    ):
        with pytest.raises(InvalidInput) as refused:
            await webhooks.create_endpoint(
                strict, OPERATOR, webhooks.NewEndpoint(url=url, event_types=[ev.CARD_LOST])
            )
        assert refused.value.issues[0]["path"] == ["url"], url
    for url in ("ftp://example.com/x", "file:///etc/passwd", "http://user:pw@example.com/"):
        with pytest.raises(ValidationError):
            webhooks.NewEndpoint(url=url, event_types=[ev.CARD_LOST])

    # Accepted while allowed, then refused at delivery time by a worker that does not allow it
    # (the same check runs after DNS before every attempt, and the POST goes to the address
    # checked): nothing is sent, the attempt says why.
    async with receiver() as rx:
        endpoint = await webhooks.create_endpoint(
            wh_ctx, OPERATOR, webhooks.NewEndpoint(url=rx.url, event_types=[ev.CHARGER_OFFLINE])
        )
        delivery_id = new_delivery_id()
        async with session_factory.begin() as db:
            event_id = await record_event(db, ev.CHARGER_OFFLINE, {"charge_box_id": "CB-SSRF"})
            db.add(
                WebhookDelivery(
                    id=delivery_id,
                    endpoint_id=endpoint["id"],
                    event_id=event_id,
                    event_type=ev.CHARGER_OFFLINE,
                    workflow_id="started-by-this-test",
                )
            )
        # Still pending (nobody runs its chain here): no second chain.
        with pytest.raises(Conflict):
            await webhooks.redeliver(wh_ctx, OPERATOR, delivery_id)
        strict_acts = WebhookActivities(strict.settings, session_factory)
        result = await ActivityEnvironment().run(
            strict_acts.attempt_delivery,
            AttemptInput(delivery_id=delivery_id, chain=1, attempt=1, final=True),
        )
        assert result.outcome == "failed" and "loopback" in (result.error or "")
        assert rx.received == []
        shown = await webhooks.show_delivery(wh_ctx, delivery_id)
        assert shown["status"] == "failed"
        assert shown["attempts_log"][0]["error"].startswith("refused:")
