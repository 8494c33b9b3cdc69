"""Inbound Lago webhooks: signatures, storage once per key, the workflow, replay, breaker."""

from __future__ import annotations

import hashlib
import json
import time
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
from api.authz import Principal
from api.deps import AppState
from api.errors import install_error_handlers
from api.webhooks_lago import build_admin_router, build_webhook_router, hmac_signature
from config.settings import Settings
from db.billing_models import LagoWebhookEvent, Notification, SessionInvoice
from db.engine import SessionFactory
from db.models import AuditLog
from tests.billing.conftest import seed_billing_events, seed_driver
from tests.helpers import eventually
from tests.sandbox.conftest import RunningSandbox
from workflows.lago_webhook import LagoWebhookWorkflow

RSA_KEY = RSAKey.generate_key(2048)
OTHER_KEY = RSAKey.generate_key(2048)


@pytest.fixture
def webhook_algorithm() -> str:
    """POLARIS_LAGO_WEBHOOK_ALGORITHM for the ``api`` fixture (parametrize to change it)."""
    return "hmac"


@pytest.fixture
async def api(
    lago_settings: Settings,
    webhook_algorithm: str,
    engine: AsyncEngine,
    session_factory: SessionFactory,
    temporal_client: Client,
    task_queue: str,
) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    install_error_handlers(app)
    public_pem = RSA_KEY.as_pem(private=False).decode()
    app.include_router(build_webhook_router(public_key=public_pem))
    app.include_router(
        build_admin_router(
            lambda: Principal(
                user_id="admin-tests",
                email=None,
                role="admin",
                session_id=None,
                impersonated_by=None,
                source="127.0.0.1",
            )
        )
    )
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
        settings = lago_settings.model_copy(update={"lago_webhook_algorithm": webhook_algorithm})
        state = AppState(settings=settings, engine=engine, sessions=session_factory, http=http)
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


def jwt_headers(body: bytes, key: RSAKey, data: str | None = None, **times: int) -> dict[str, str]:
    token = jwt.encode(
        {"alg": "RS256"},
        {"data": body.decode() if data is None else data, "iss": "https://lago", **times},
        key,
    )
    return {
        "Content-Type": "application/json",
        "X-Lago-Signature": token,
        "X-Lago-Signature-Algorithm": "jwt",
        "X-Lago-Unique-Key": str(uuid.uuid4()),
    }


@pytest.mark.parametrize("webhook_algorithm", ["jwt"])
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
                select(Notification).where(Notification.user_id == f"user-{driver.public_id}")
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
                select(Notification).where(Notification.user_id == f"user-{driver.public_id}")
            )
        ).all()
    assert len(notes_after) == 1  # a replay never notifies twice
    async with session_factory() as db:
        audited = (
            await db.scalars(
                select(AuditLog).where(
                    AuditLog.action == "lago_webhooks.replayed",
                    AuditLog.subject == f"lago_webhook:{event_id}",
                )
            )
        ).all()
    assert [(a.actor, a.details["replay_id"]) for a in audited] == [
        ("user:admin-tests", replay.json()["id"])
    ]
    missing = await api.post("/api/admin/webhooks/lago/999999999/replay")
    assert missing.status_code == 404


async def test_breaker_opens_after_consecutive_failures_and_skips_until_reset(
    api: httpx.AsyncClient, session_factory: SessionFactory
) -> None:
    failed_ids = []
    for i in range(2):  # threshold 2 in the fixture
        # No lago_id: cannot be processed. Distinct bodies: the same body twice is one event.
        body = body_of("invoice.created", number=f"broken-{i}-{uuid.uuid4().hex[:6]}")
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


# -- attacks (issue #8) -------------------------------------------------------------------------


async def stored_count(factory: SessionFactory, body: bytes) -> int:
    async with factory() as db:
        rows = await db.scalars(
            select(LagoWebhookEvent.id).where(
                LagoWebhookEvent.body_sha256 == hashlib.sha256(body).hexdigest()
            )
        )
        return len(rows.all())


async def test_a_captured_webhook_replayed_under_a_new_key_is_a_duplicate(
    api: httpx.AsyncClient, session_factory: SessionFactory
) -> None:
    body = body_of("invoice.payment_status_updated", lago_id=str(uuid.uuid4()))
    first = await api.post("/api/webhook/lago", content=body, headers=hmac_headers(body))
    assert first.status_code == 200 and first.json()["duplicate"] is False
    # The attacker kept the signed body and its signature; the unique key is theirs to choose.
    for _ in range(3):
        again = await api.post("/api/webhook/lago", content=body, headers=hmac_headers(body))
        assert again.status_code == 200, again.text
        assert again.json() == {**first.json(), "duplicate": True, "status": again.json()["status"]}
    assert await stored_count(session_factory, body) == 1


@pytest.mark.parametrize("webhook_algorithm", ["hmac", "jwt"])
async def test_a_non_ascii_signature_is_401_not_500(
    api: httpx.AsyncClient, session_factory: SessionFactory
) -> None:
    body = body_of("invoice.created", lago_id=str(uuid.uuid4()))
    headers: dict[str, Any] = {**hmac_headers(body), "X-Lago-Signature": "sïgnätürê€".encode()}
    del headers["X-Lago-Signature-Algorithm"]
    answer = await api.post("/api/webhook/lago", content=body, headers=headers)
    assert answer.status_code == 401 and answer.json()["error"] == "INVALID_SIGNATURE"
    assert await stored_count(session_factory, body) == 0


@pytest.mark.parametrize("webhook_algorithm", ["jwt"])
async def test_the_client_cannot_choose_the_algorithm(
    api: httpx.AsyncClient, session_factory: SessionFactory
) -> None:
    # The endpoint verifies Lago's JWTs; the attacker signs with HMAC and the webhook secret
    # this repository publishes, and names hmac in the header.
    body = body_of("invoice.created", lago_id=str(uuid.uuid4()))
    answer = await api.post("/api/webhook/lago", content=body, headers=hmac_headers(body))
    assert answer.status_code == 401
    assert "POLARIS_LAGO_WEBHOOK_ALGORITHM" in answer.json()["message"]
    assert await stored_count(session_factory, body) == 0


@pytest.mark.parametrize("webhook_algorithm", ["jwt"])
@pytest.mark.parametrize(
    ("offset_s", "accepted"),
    [(0, True), (-3600, False), (3600, False)],
    ids=["fresh", "an-hour-old", "from-the-future"],
)
async def test_signed_times_outside_the_tolerance_are_refused(
    api: httpx.AsyncClient, session_factory: SessionFactory, offset_s: int, accepted: bool
) -> None:
    body = body_of("subscription.started", external_id=f"sub-{uuid.uuid4().hex[:8]}")
    headers = jwt_headers(body, RSA_KEY, iat=int(time.time()) + offset_s)
    answer = await api.post("/api/webhook/lago", content=body, headers=headers)
    assert answer.status_code == (200 if accepted else 401), answer.text
    assert await stored_count(session_factory, body) == (1 if accepted else 0)
    expired = jwt_headers(body, RSA_KEY, exp=int(time.time()) - 3600)
    refused = await api.post("/api/webhook/lago", content=body, headers=expired)
    assert refused.status_code == 401


async def test_an_oversized_body_is_refused_before_it_is_read_whole(
    api: httpx.AsyncClient, lago_settings: Settings, session_factory: SessionFactory
) -> None:
    limit = lago_settings.lago_webhook_max_body_bytes
    body = body_of("invoice.created", padding="x" * limit)
    answer = await api.post("/api/webhook/lago", content=body, headers=hmac_headers(body))
    assert answer.status_code == 413 and answer.json()["error"] == "PAYLOAD_TOO_LARGE"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while streaming
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]

    streamed = await api.post("/api/webhook/lago", content=chunks(), headers=hmac_headers(body))
    assert streamed.status_code == 413
    assert await stored_count(session_factory, body) == 0
