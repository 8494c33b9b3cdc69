"""The webhooks family over the real API (real auth service, live role checks): operators and
admins only, drivers 403, every change audited; a driver's report-lost reaches a subscribed
receiver as a signed ``card.lost`` that matches its schema."""

from __future__ import annotations

import json

import jsonschema
import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.worker import Worker

from config.settings import Settings
from db.engine import SessionFactory
from db.models import AuditLog
from domain import events as ev
from domain.webhook_schemas import schema_for
from tests.fixtures.auth import AuthService
from tests.helpers import eventually
from tests.identity.conftest import person, seed_card
from tests.identity.real_api import real_api
from tests.webhooks.receiver import receiver

pytestmark = pytest.mark.timeout(180)

BASE = "/api/v1/webhooks"


def api_settings(settings: Settings, auth_service: AuthService, task_queue: str) -> Settings:
    return settings.model_copy(
        update={
            "auth_url": auth_service.base_url,
            "auth_internal_url": auth_service.internal_url,
            "auth_internal_token": None,
            "auth_internal_token_api": SecretStr(auth_service.internal_tokens["api"]),
            # The API's own workflows (the local-list reconciler woken by report-lost) go to a
            # queue nobody serves here; this test's dispatcher runs on the worker's queue.
            "temporal_task_queue": f"{task_queue}-api",
            "log_tag_key": SecretStr("webhook-test-tag-key"),
        }
    )


async def test_webhooks_over_the_api(
    wh_settings: Settings,
    wh_worker: Worker,
    engine: AsyncEngine,
    session_factory: SessionFactory,
    temporal_client: Client,
    auth_service: AuthService,
    task_queue: str,
) -> None:
    operator = await person(auth_service, "wh-operator", role="operator")
    admin = await person(auth_service, "wh-admin", role="admin")
    driver = await person(auth_service, "wh-driver")
    tag = await seed_card(session_factory, owner=driver)
    settings = api_settings(wh_settings, auth_service, task_queue)
    async with (
        receiver() as rx,
        real_api(settings, engine, session_factory, temporal_client) as api,
    ):
        http = api.client
        # Drivers: 403 on every route of the family.
        for method, path in (
            ("POST", f"{BASE}/endpoints"),
            ("GET", f"{BASE}/endpoints"),
            ("GET", f"{BASE}/endpoints/ep_x"),
            ("PATCH", f"{BASE}/endpoints/ep_x"),
            ("DELETE", f"{BASE}/endpoints/ep_x"),
            ("POST", f"{BASE}/endpoints/ep_x/rotate-secret"),
            ("GET", f"{BASE}/deliveries"),
            ("GET", f"{BASE}/deliveries/msg_x"),
            ("POST", f"{BASE}/deliveries/msg_x/redeliver"),
        ):
            answer = await http.request(method, path, headers=driver.headers, json={})
            assert answer.status_code == 403, (path, answer.text)
            assert answer.json()["error"] == "FORBIDDEN"

        # Bad input: the error envelope with issues.
        bad = await http.post(
            f"{BASE}/endpoints",
            json={"url": "ftp://example.com", "event_types": ["card.stolen"]},
            headers=operator.headers,
        )
        assert bad.status_code == 422
        paths = {tuple(i["path"]) for i in bad.json()["issues"]}
        assert paths >= {("body", "url"), ("body", "event_types")}

        created = await http.post(
            f"{BASE}/endpoints",
            json={"url": rx.url, "event_types": [ev.CARD_LOST], "description": "fleet CRM"},
            headers=operator.headers,
        )
        assert created.status_code == 201, created.text
        endpoint = created.json()
        assert endpoint["owner_user_id"] == operator.user_id
        rx.secrets = [endpoint["secret"]]
        ep_path = f"{BASE}/endpoints/{endpoint['id']}"

        listed = await http.get(f"{BASE}/endpoints", headers=admin.headers)
        assert endpoint["id"] in [e["id"] for e in listed.json()]
        assert all("secret" not in e for e in listed.json())
        changed = await http.patch(
            ep_path, json={"description": "fleet CRM (prod)"}, headers=admin.headers
        )
        assert changed.status_code == 200 and changed.json()["description"] == "fleet CRM (prod)"
        missing = await http.get(f"{BASE}/endpoints/ep_nope", headers=operator.headers)
        assert missing.status_code == 404 and missing.json()["error"] == "NOT_FOUND"

        # A driver reports a card lost: the event reaches the receiver, signed and valid.
        lost = await http.post(f"/api/v1/me/cards/{tag}/report-lost", headers=driver.headers)
        assert lost.status_code == 200, lost.text
        await eventually(lambda: len(rx.received) == 1, message="the card.lost webhook")
        [got] = rx.received
        assert got.verified == {endpoint["secret"]: True}
        body = json.loads(got.body)
        jsonschema.validate(body, schema_for(ev.CARD_LOST))
        assert body["data"]["user_id"] == driver.user_id
        assert body["data"]["card"].startswith("tag#") and tag not in got.body.decode()

        async def delivered() -> list[dict[str, object]]:
            # The receiver saw the request before the attempt's result was recorded.
            answer = await http.get(
                f"{BASE}/deliveries?endpoint={endpoint['id']}&status=delivered",
                headers=operator.headers,
            )
            rows: list[dict[str, object]] = answer.json()
            return rows

        [delivery] = await eventually(delivered, message="the delivery to be recorded")
        assert delivery["id"] == got.webhook_id and delivery["event_type"] == ev.CARD_LOST
        detail = await http.get(f"{BASE}/deliveries/{delivery['id']}", headers=operator.headers)
        assert detail.json()["attempts_log"][0]["response"]["status"] == 204
        bad_status = await http.get(f"{BASE}/deliveries?status=lost", headers=operator.headers)
        assert bad_status.status_code == 422

        rotated = await http.post(f"{ep_path}/rotate-secret", headers=operator.headers)
        assert rotated.status_code == 200 and rotated.json()["secret"] != endpoint["secret"]
        removed = await http.delete(ep_path, headers=operator.headers)
        assert removed.status_code == 200
        gone = await http.get(ep_path, headers=operator.headers)
        assert gone.status_code == 404

    async with session_factory() as db:
        audit = (
            await db.scalars(
                select(AuditLog)
                .where(AuditLog.subject == f"webhook_endpoint:{endpoint['id']}")
                .order_by(AuditLog.id)
            )
        ).all()
    assert [(a.action, a.actor) for a in audit] == [
        ("webhook_endpoint.created", f"user:{operator.user_id}"),
        ("webhook_endpoint.updated", f"user:{admin.user_id}"),
        ("webhook_endpoint.secret_rotated", f"user:{operator.user_id}"),
        ("webhook_endpoint.deleted", f"user:{operator.user_id}"),
    ]
    assert all(endpoint["secret"] not in json.dumps(a.details) for a in audit)
