"""Inbound Lago webhooks: signatures, storage once per key, the workflow, replay, breaker."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from joserfc import jwt
from joserfc.jwk import RSAKey
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.worker import Worker

from activities.lago import LagoBilling, SendUsageEventsInput
from activities.lago_webhooks import LagoWebhookActivities, breaker_state, reset_breaker
from api.deps import AppState
from api.errors import install_error_handlers
from api.webhooks_lago import build_admin_router, build_webhook_router, hmac_signature
from config.settings import Settings
from db.billing_models import LagoWebhookEvent, Notification, SessionInvoice
from db.engine import SessionFactory
from tests.billing.conftest import seed_billing_events, seed_driver
from tests.helpers import eventually
from tests.sandbox.conftest import RunningSandbox
from workflows.lago_webhook import LagoWebhookWorkflow

RSA_KEY = RSAKey.generate_key(2048)
OTHER_KEY = RSAKey.generate_key(2048)


@pytest.fixture
async def api(
    lago_settings: Settings,
    engine: AsyncEngine,
    session_factory: SessionFactory,
    temporal_client: Client,
    task_queue: str,
) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    install_error_handlers(app)
    public_pem = RSA_KEY.as_pem(private=False).decode()
    app.include_router(build_webhook_router(public_key=public_pem))
    app.include_router(build_admin_router(lambda: None))
    await reset_breaker(session_factory, by="tests")
    activities = LagoWebhookActivities(session_factory, breaker_threshold=2)
    async with (
        httpx.AsyncClient() as http,
        Worker(
            temporal_client,
            task_queue=task_queue,
            workflows=[LagoWebhookWorkflow],
            activities=[activities.process_webhook_event, activities.fail_webhook_event],
        ),
    ):
        state = AppState(settings=lago_settings, engine=engine, sessions=session_factory, http=http)
        state._temporal = temporal_client
        app.state.polaris = state
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield client
    await reset_breaker(session_factory, by="tests")


def hmac_headers(
    body: bytes, key: str | None = None, secret: str = "sandbox-webhook-secret"
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Lago-Signature": hmac_signature(secret, body),
        "X-Lago-Signature-Algorithm": "hmac",
        "X-Lago-Unique-Key": key or str(uuid.uuid4()),
    }


def body_of(webhook_type: str, **obj: Any) -> bytes:
    object_type = webhook_type.split(".")[0]
    payload = {"webhook_type": webhook_type, "object_type": object_type, object_type: obj}
    return json.dumps(payload, separators=(",", ":")).encode()


async def row(factory: SessionFactory, event_id: int) -> LagoWebhookEvent:
    async with factory() as db:
        found = await db.get(LagoWebhookEvent, event_id)
        assert found is not None
        return found


async def settled(factory: SessionFactory, event_id: int) -> LagoWebhookEvent:
    async def check() -> LagoWebhookEvent | None:
        current = await row(factory, event_id)
        return current if current.status != "pending" else None

    return await eventually(check, timeout=20)


async def test_hmac_webhook_is_stored_once_and_processed(
    api: httpx.AsyncClient, session_factory: SessionFactory
) -> None:
    body = body_of("subscription.started", external_id="sub-X")
    headers = hmac_headers(body)
    first = await api.post("/api/webhook/lago", content=body, headers=headers)
    assert first.status_code == 200, first.text
    assert first.json()["duplicate"] is False
    again = await api.post("/api/webhook/lago", content=body, headers=headers)
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert again.json()["id"] == first.json()["id"]
    stored = await settled(session_factory, first.json()["id"])
    assert stored.status == "processed" and stored.attempts == 1
    async with session_factory() as db:
        rows = (
            await db.scalars(
                select(LagoWebhookEvent).where(
                    LagoWebhookEvent.unique_key == headers["X-Lago-Unique-Key"]
                )
            )
        ).all()
    assert len(rows) == 1


@pytest.mark.parametrize(
    "tamper",
    ["body", "secret", "missing_signature", "unknown_algorithm"],
)
async def test_bad_signatures_are_refused_and_not_stored(
    api: httpx.AsyncClient, session_factory: SessionFactory, tamper: str
) -> None:
    body = body_of("invoice.created", lago_id=str(uuid.uuid4()))
    headers = hmac_headers(
        body, secret="wrong-secret" if tamper == "secret" else "sandbox-webhook-secret"
    )
    if tamper == "body":
        body = body.replace(b"invoice.created", b"invoice.voided")
    if tamper == "missing_signature":
        del headers["X-Lago-Signature"]
    if tamper == "unknown_algorithm":
        headers["X-Lago-Signature-Algorithm"] = "md5"
    answer = await api.post("/api/webhook/lago", content=body, headers=headers)
    assert answer.status_code == 401
    assert answer.json()["error"] == "INVALID_SIGNATURE"
    async with session_factory() as db:
        found = await db.scalars(
            select(LagoWebhookEvent).where(
                LagoWebhookEvent.unique_key == headers["X-Lago-Unique-Key"]
            )
        )
        assert found.all() == []


def jwt_headers(body: bytes, key: RSAKey, data: str | None = None) -> dict[str, str]:
    token = jwt.encode(
        {"alg": "RS256"},
        {"data": body.decode() if data is None else data, "iss": "https://lago"},
        key,
    )
    return {
        "Content-Type": "application/json",
        "X-Lago-Signature": token,
        "X-Lago-Signature-Algorithm": "jwt",
        "X-Lago-Unique-Key": str(uuid.uuid4()),
    }


async def test_jwt_mode(api: httpx.AsyncClient, session_factory: SessionFactory) -> None:
    body = body_of("subscription.terminated", external_id="sub-Y")
    good = await api.post("/api/webhook/lago", content=body, headers=jwt_headers(body, RSA_KEY))
    assert good.status_code == 200, good.text
    assert (await settled(session_factory, good.json()["id"])).status == "processed"

    wrong_key = await api.post(
        "/api/webhook/lago", content=body, headers=jwt_headers(body, OTHER_KEY)
    )
    assert wrong_key.status_code == 401
    other_body = await api.post(
        "/api/webhook/lago", content=body, headers=jwt_headers(body, RSA_KEY, data='{"x":1}')
    )
    assert other_body.status_code == 401


async def test_invoice_created_links_sessions_notifies_and_replays(
    api: httpx.AsyncClient,
    lago_sandbox: RunningSandbox,
    billing: LagoBilling,
    session_factory: SessionFactory,
) -> None:
    driver = await seed_driver(session_factory, billing)
    workflows = [f"session:test:{uuid.uuid4().hex[:10]}" for _ in range(2)]
    for workflow_id in workflows:
        await seed_billing_events(
            session_factory, workflow_id, [4_000, 1_000], customer=driver.public_id
        )
        await billing.send_usage_events(SendUsageEventsInput(workflow_id=workflow_id))
    # Lago bills the period; take the invoice.created webhook it produced and deliver it.
    assert lago_sandbox.admin("POST", "/billing/run").status_code in (200, 201, 204)
    hooks = lago_sandbox.admin("GET", "/webhooks").json()
    hooks = hooks["webhooks"] if isinstance(hooks, dict) else hooks
    hook = next(
        h
        for h in hooks
        if h["webhook_type"] == "invoice.created"
        and h["payload"]["invoice"]["customer"]["external_id"] == driver.public_id
    )
    body = json.dumps(hook["payload"], separators=(",", ":")).encode()
    answer = await api.post(
        "/api/webhook/lago", content=body, headers=hmac_headers(body, key=hook["unique_key"])
    )
    assert answer.status_code == 200, answer.text
    event_id = answer.json()["id"]
    original = await settled(session_factory, event_id)
    assert original.status == "processed"
    lago_invoice_id = hook["payload"]["invoice"]["lago_id"]
    async with session_factory() as db:
        linked = (
            await db.scalars(
                select(SessionInvoice.workflow_id).where(
                    SessionInvoice.lago_invoice_id == lago_invoice_id
                )
            )
        ).all()
        notes = (
            await db.scalars(
                select(Notification).where(Notification.user_public_id == driver.public_id)
            )
        ).all()
    assert sorted(linked) == sorted(workflows)
    assert [n.kind for n in notes] == ["invoice.created"]

    replay = await api.post(f"/api/admin/webhooks/lago/{event_id}/replay")
    assert replay.status_code == 202, replay.text
    replayed = await settled(session_factory, replay.json()["id"])
    assert (replayed.status, replayed.replay_of) == ("processed", event_id)
    untouched = await row(session_factory, event_id)
    assert (untouched.status, untouched.attempts, untouched.processed_at) == (
        original.status,
        original.attempts,
        original.processed_at,
    )
    async with session_factory() as db:
        notes_after = (
            await db.scalars(
                select(Notification).where(Notification.user_public_id == driver.public_id)
            )
        ).all()
    assert len(notes_after) == 1  # a replay never notifies twice
    missing = await api.post("/api/admin/webhooks/lago/999999999/replay")
    assert missing.status_code == 404


async def test_breaker_opens_after_consecutive_failures_and_skips_until_reset(
    api: httpx.AsyncClient, session_factory: SessionFactory
) -> None:
    failed_ids = []
    for _ in range(2):  # threshold 2 in the fixture
        body = body_of("invoice.created", number="broken")  # no lago_id: cannot be processed
        answer = await api.post("/api/webhook/lago", content=body, headers=hmac_headers(body))
        assert answer.status_code == 200
        failed = await settled(session_factory, answer.json()["id"])
        assert failed.status == "failed" and failed.last_error
        failed_ids.append(failed.id)
    state = await breaker_state(session_factory)
    assert state.open and state.consecutive_failures == 2

    body = body_of("subscription.started", external_id="sub-Z")
    skipped = await api.post("/api/webhook/lago", content=body, headers=hmac_headers(body))
    assert skipped.status_code == 200 and skipped.json()["status"] == "skipped"
    assert (await row(session_factory, skipped.json()["id"])).status == "skipped"

    await reset_breaker(session_factory, by="operator@example.com")
    body = body_of("subscription.started", external_id="sub-Z2")
    after = await api.post("/api/webhook/lago", content=body, headers=hmac_headers(body))
    assert after.json()["status"] == "pending"
    assert (await settled(session_factory, after.json()["id"])).status == "processed"
    # The skipped event can be replayed by an operator.
    replay = await api.post(f"/api/admin/webhooks/lago/{skipped.json()['id']}/replay")
    assert (await settled(session_factory, replay.json()["id"])).status == "processed"


async def test_admin_routes_refuse_without_a_configured_check() -> None:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(build_admin_router())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        answer = await client.post("/api/admin/webhooks/lago/1/replay")
    assert answer.status_code == 403
