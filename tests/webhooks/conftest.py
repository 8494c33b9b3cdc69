"""Webhook tests: real PostgreSQL, a real Temporal worker running the dispatcher and delivery
workflows on a fresh task queue, and a real HTTP receiver (``receiver.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import delete, select
from temporalio.client import Client
from temporalio.worker import Worker

from activities.webhooks import WebhookActivities
from config.settings import Settings
from db.engine import SessionFactory
from db.webhook_models import WebhookDelivery, WebhookEndpoint
from services.actor import Actor
from services.context import ServiceContext
from workflows.webhook_messages import DispatcherInput, dispatcher_workflow_id
from workflows.webhooks import WebhookDeliveryWorkflow, WebhookDispatcherWorkflow

OPERATOR = Actor(id="user:webhook-operator", role="operator", source="203.0.113.20")


def webhook_settings(base: Settings, task_queue: str, **overrides: object) -> Settings:
    """Loopback receivers allowed; a retry schedule of about two seconds."""
    return base.model_copy(
        update={
            "temporal_task_queue": task_queue,
            "webhooks_allow_private_targets": True,
            "webhook_timeout_s": 1.0,
            "webhook_retry_first_delay_s": 0.2,
            "webhook_retry_max_delay_s": 0.5,
            "webhook_retry_give_up_after_s": 1.0,
            "webhook_dispatch_poll_s": 0.2,
            **overrides,
        }
    )


def context(settings: Settings, sf: SessionFactory, client: Client) -> ServiceContext:
    async def temporal() -> Client:
        return client

    return ServiceContext(settings=settings, sessions=sf, temporal=temporal)


@pytest.fixture
def wh_settings(base_settings: Settings, task_queue: str) -> Settings:
    return webhook_settings(base_settings, task_queue)


@pytest.fixture
async def wh_ctx(
    wh_settings: Settings, session_factory: SessionFactory, temporal_client: Client
) -> AsyncIterator[ServiceContext]:
    ctx = context(wh_settings, session_factory, temporal_client)
    async with session_factory() as db:
        before = set((await db.scalars(select(WebhookEndpoint.id))).all())
    yield ctx
    # Endpoints of this test go away, so later tests' dispatchers never deliver to them.
    async with session_factory() as db, db.begin():
        await db.execute(delete(WebhookEndpoint).where(WebhookEndpoint.id.not_in(before)))


@asynccontextmanager
async def running_webhooks(
    client: Client, task_queue: str, settings: Settings, sf: SessionFactory
) -> AsyncIterator[Worker]:
    """A worker with the webhook workflows and activities (reading ``settings``), and a
    dispatcher of its own (its cursor named after the task queue)."""
    acts = WebhookActivities(settings, sf, client)
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=[WebhookDispatcherWorkflow, WebhookDeliveryWorkflow],
        activities=[acts.dispatch_events, acts.wait_for_events, acts.attempt_delivery],
    )
    async with worker:
        handle = await client.start_workflow(
            WebhookDispatcherWorkflow.run,
            DispatcherInput(name=task_queue, wait_s=5.0),
            id=dispatcher_workflow_id(task_queue),
            task_queue=task_queue,
        )
        try:
            yield worker
        finally:
            await handle.terminate()


@pytest.fixture
async def wh_worker(
    temporal_client: Client, task_queue: str, wh_settings: Settings, session_factory: SessionFactory
) -> AsyncIterator[Worker]:
    async with running_webhooks(temporal_client, task_queue, wh_settings, session_factory) as w:
        yield w


async def deliveries_of(sf: SessionFactory, endpoint_id: str) -> list[WebhookDelivery]:
    async with sf() as db:
        return list(
            (
                await db.scalars(
                    select(WebhookDelivery)
                    .where(WebhookDelivery.endpoint_id == endpoint_id)
                    .order_by(WebhookDelivery.event_id)
                )
            ).all()
        )
