"""EV cards and the card-link saga (real worker, real auth service, Lago sandbox)."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import select
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from activities.identity import ACTIVITY_WRITE_MAPPING, IdentityActivities, WriteMappingInput
from activities.lago import LagoBilling
from config.settings import Settings
from db.engine import SessionFactory
from db.models import UserMapping
from tests.fixtures.auth import AuthService
from tests.identity.conftest import outbox_urls, person, unique_email
from tests.sandbox.conftest import RunningSandbox
from workflows.card_link import CardLinkWorkflow, card_link_workflow_id

pytestmark = pytest.mark.timeout(180)


def new_tag() -> str:
    return f"C{uuid.uuid4().hex[:12].upper()}"


async def active_mappings(factory: SessionFactory, id_tag: str) -> list[UserMapping]:
    async with factory() as db:
        rows = await db.scalars(
            select(UserMapping).where(UserMapping.id_tag == id_tag, UserMapping.is_active)
        )
        return list(rows.all())


async def test_card_crud_validation(api: httpx.AsyncClient, auth_service: AuthService) -> None:
    admin = await person(auth_service, "cards", role="admin")
    driver = await person(auth_service, "nocards")
    parent, child = new_tag(), new_tag()
    made = await api.post("/api/v1/cards", json={"id_tag": parent}, headers=admin.headers)
    assert made.status_code == 201, made.text
    again = await api.post("/api/v1/cards", json={"id_tag": parent}, headers=admin.headers)
    assert again.status_code == 409 and again.json()["error"] == "CARD_EXISTS"
    too_long = await api.post("/api/v1/cards", json={"id_tag": "X" * 21}, headers=admin.headers)
    assert too_long.status_code == 422 and too_long.json()["issues"]
    orphan = await api.post(
        "/api/v1/cards", json={"id_tag": child, "parent_id_tag": "NOPE"}, headers=admin.headers
    )
    assert orphan.status_code == 422
    made = await api.post(
        "/api/v1/cards",
        json={"id_tag": child, "parent_id_tag": parent, "expires_at": "2030-01-01T00:00:00Z"},
        headers=admin.headers,
    )
    assert made.status_code == 201 and made.json()["parent_id_tag"] == parent
    patched = await api.patch(
        f"/api/v1/cards/{child}", json={"is_active": False}, headers=admin.headers
    )
    assert patched.status_code == 200 and patched.json()["is_active"] is False
    detail = await api.get(f"/api/v1/cards/{parent}", headers=admin.headers)
    assert detail.json()["children"] == [child]
    assert (
        await api.post("/api/v1/cards", json={"id_tag": new_tag()}, headers=driver.headers)
    ).status_code == 403


async def test_link_reassign_unlink(
    api: httpx.AsyncClient,
    worker: Worker,
    auth_service: AuthService,
    session_factory: SessionFactory,
    lago_sandbox: RunningSandbox,
    pg_url: str,
    temporal_client: Client,
) -> None:
    admin = await person(auth_service, "linker", role="admin")
    parent, child = new_tag(), new_tag()
    for body in ({"id_tag": parent}, {"id_tag": child, "parent_id_tag": parent}):
        assert (
            await api.post("/api/v1/cards", json=body, headers=admin.headers)
        ).status_code == 201
    first = unique_email("first")
    linked = await api.post(
        f"/api/v1/cards/{parent}/link",
        json={"email": first, "name": "First"},
        headers=admin.headers,
    )
    assert linked.status_code == 200, linked.text
    # The saga ran under an opaque id: the card number is not what Temporal lists.
    saga = await temporal_client.get_workflow_handle(card_link_workflow_id(parent)).describe()
    assert parent not in saga.id
    result = linked.json()
    assert result["status"] == "linked" and result["user_created"] and result["invited"]
    assert result["completed"] == [
        "prepare",
        "lago_customer",
        "lago_subscription",
        "auth_user",
        "mapping",
        "invite",
    ]
    public_id = result["public_id"]
    assert lago_sandbox.api("GET", f"/customers/{public_id}").status_code == 200
    assert lago_sandbox.api("GET", f"/subscriptions/sub-{public_id}").status_code == 200
    assert len(await outbox_urls(pg_url, first)) == 1  # the invitation
    # The same child card for the same driver, so unlink has something to cascade to.
    assert (
        await api.post(f"/api/v1/cards/{child}/link", json={"email": first}, headers=admin.headers)
    ).json()["public_id"] == public_id

    second = unique_email("second")
    refused = await api.post(
        f"/api/v1/cards/{parent}/link", json={"email": second}, headers=admin.headers
    )
    assert refused.status_code == 409
    assert refused.json()["error"] == "REASSIGN_REQUIRED"
    reassigned = await api.post(
        f"/api/v1/cards/{parent}/link",
        json={"email": second, "confirm_reassign": True},
        headers=admin.headers,
    )
    assert reassigned.status_code == 200, reassigned.text
    [mapping] = await active_mappings(session_factory, parent)
    assert mapping.email == second and mapping.user_id == reassigned.json()["user_id"]

    unlinked = await api.post(f"/api/v1/cards/{parent}/unlink", headers=admin.headers)
    assert unlinked.status_code == 200, unlinked.text
    assert unlinked.json()["cascaded_to"] == [child]
    assert await active_mappings(session_factory, parent) == []
    assert await active_mappings(session_factory, child) == []
    audit = await api.get("/api/v1/audit", params={"subject": parent}, headers=admin.headers)
    actions = [row["action"] for row in audit.json()]
    assert {"card.created", "card.linked", "card.reassigned", "card.unlinked"} <= set(actions)


async def test_saga_compensates_when_a_step_fails(
    api: httpx.AsyncClient,
    temporal_client: Client,
    identity_settings: Settings,
    session_factory: SessionFactory,
    auth_service: AuthService,
    lago_sandbox: RunningSandbox,
    pg_url: str,
    task_queue: str,
) -> None:
    """The mapping write fails for good: the user, the subscription and the customer go."""
    admin = await person(auth_service, "saga", role="admin")
    tag = new_tag()
    assert (
        await api.post("/api/v1/cards", json={"id_tag": tag}, headers=admin.headers)
    ).status_code == 201

    @activity.defn(name=ACTIVITY_WRITE_MAPPING)
    async def broken_write_mapping(input: WriteMappingInput) -> None:
        raise ApplicationError("disk on fire", type="MappingBroken", non_retryable=True)

    identity = IdentityActivities(identity_settings, session_factory)
    lago = LagoBilling(identity_settings, session_factory)
    email = unique_email("compensated")
    async with Worker(
        temporal_client,
        task_queue=task_queue,
        workflows=[CardLinkWorkflow],
        activities=[
            identity.prepare_card_link,
            identity.provision_user,
            identity.delete_provisioned_user,
            identity.invite_user,
            broken_write_mapping,
            identity.revert_mapping,
            identity.lago_terminate_subscription,
            identity.lago_discard_customer,
            lago.upsert_customer,
            lago.ensure_subscription,
        ],
    ):
        answer = await api.post(
            f"/api/v1/cards/{tag}/link", json={"email": email}, headers=admin.headers
        )
    assert answer.status_code == 502, answer.text
    assert answer.json()["error"] == "CARD_LINK_FAILED"
    [result] = answer.json()["issues"]
    assert result["failed_step"] == "mapping" and result["error_type"] == "MappingBroken"
    assert result["compensated"] == ["auth_user", "lago_subscription", "lago_customer"]
    assert result["compensation_failed"] == []
    # The BetterAuth user created by this run is gone, no invitation went out.
    async with httpx.AsyncClient(base_url=auth_service.internal_url, timeout=10) as auth:
        gone = await auth.get(
            f"/internal/users/{result['user_id']}", headers=auth_service.internal_headers()
        )
    assert gone.status_code == 404 and gone.json()["error"] == "not_found"
    assert await outbox_urls(pg_url, email) == []
    # The subscription was terminated in Lago; no mapping was left behind.
    sub = lago_sandbox.api("GET", f"/subscriptions/sub-{result['public_id']}")
    assert sub.status_code == 404 or sub.json()["subscription"]["status"] == "terminated"
    assert await active_mappings(session_factory, tag) == []


async def test_saga_compensates_when_lago_is_down(
    api: httpx.AsyncClient,
    worker: Worker,
    auth_service: AuthService,
    session_factory: SessionFactory,
    lago_sandbox: RunningSandbox,
) -> None:
    admin = await person(auth_service, "lagodown", role="admin")
    tag = new_tag()
    assert (
        await api.post("/api/v1/cards", json={"id_tag": tag}, headers=admin.headers)
    ).status_code == 201
    fault = lago_sandbox.admin(
        "POST",
        "/faults",
        json={
            "path_prefix": "/api/v1/subscriptions",
            "method": "POST",
            "status": 503,
            "count": None,
        },
    )
    assert fault.status_code == 201, fault.text
    try:
        answer = await api.post(
            f"/api/v1/cards/{tag}/link",
            json={"email": unique_email("down")},
            headers=admin.headers,
        )
    finally:
        lago_sandbox.admin("DELETE", "/faults")
    assert answer.status_code == 502, answer.text
    [result] = answer.json()["issues"]
    assert result["failed_step"] == "lago_subscription"
    assert result["compensated"] == ["lago_customer"]
    assert result["user_id"] is None
    assert await active_mappings(session_factory, tag) == []
