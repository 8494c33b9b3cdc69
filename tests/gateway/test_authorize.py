"""Authorize: the local decision, the workflow's pre-authorization within budget, fallbacks."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from ocpp.v16 import call
from sqlalchemy import select
from temporalio.client import Client

from db.engine import SessionFactory
from db.models import AuditLog, session_intents
from gateway.main import Gateway
from tests.gateway.conftest import charger_session, seed_card, seed_charger

PAST = datetime(2020, 1, 1, tzinfo=UTC)


async def _intent_workflow(sf: SessionFactory, cb: str, id_tag: str) -> str | None:
    async with sf() as s:
        return await s.scalar(
            select(session_intents.c.workflow_id).where(
                session_intents.c.charge_box_id == cb, session_intents.c.id_tag == id_tag
            )
        )


@pytest.mark.parametrize(
    ("card", "expected"),
    [
        ({"blocked": True}, "Blocked"),
        ({"expires_at": PAST}, "Expired"),
        ({"lost_at": PAST}, "Blocked"),
        ({"is_active": False}, "Blocked"),
        ({"mapped": False}, "Invalid"),
    ],
)
async def test_rejections_are_local_and_audited(
    gateway: Gateway, session_factory: SessionFactory, card: dict[str, object], expected: str
) -> None:
    cb = await seed_charger(session_factory)
    id_tag = await seed_card(session_factory, **card)  # type: ignore[arg-type]
    async with charger_session(gateway, cb) as cp:
        answer = await cp.call(call.Authorize(id_tag=id_tag))
    assert answer.id_tag_info["status"] == expected
    async with session_factory() as s:
        audit = (await s.execute(select(AuditLog).where(AuditLog.subject == id_tag))).scalar_one()
    assert audit.action == "authorize.rejected"
    assert await _intent_workflow(session_factory, cb, id_tag) is None


async def test_unknown_and_parent_blocked(
    gateway: Gateway, session_factory: SessionFactory
) -> None:
    cb = await seed_charger(session_factory)
    parent = await seed_card(session_factory, blocked=True, mapped=False)
    child = await seed_card(session_factory, parent=parent)
    async with charger_session(gateway, cb) as cp:
        unknown = await cp.call(call.Authorize(id_tag="NOBODY-KNOWS-ME"))
        child_answer = await cp.call(call.Authorize(id_tag=child))
    assert unknown.id_tag_info["status"] == "Invalid"
    assert child_answer.id_tag_info["status"] == "Blocked"
    assert child_answer.id_tag_info["parent_id_tag"] == parent


async def test_accepted_tap_starts_the_workflow_and_is_remembered(
    gateway: Gateway, session_factory: SessionFactory, temporal_client: Client
) -> None:
    cb = await seed_charger(session_factory)
    id_tag = await seed_card(session_factory)
    denied = await seed_card(session_factory, prefix="DENY")
    async with charger_session(gateway, cb) as cp:
        answer = await cp.call(call.Authorize(id_tag=id_tag))
        tightened = await cp.call(call.Authorize(id_tag=denied))
    assert answer.id_tag_info["status"] == "Accepted"
    assert tightened.id_tag_info["status"] == "Blocked"  # the workflow may only tighten
    workflow_id = await _intent_workflow(session_factory, cb, id_tag)
    assert workflow_id is not None and workflow_id.startswith(f"session:{cb}:tap:{id_tag}:")
    handle = temporal_client.get_workflow_handle(workflow_id)
    assert await handle.query("origin") == "tap"


async def test_slow_workflow_answers_from_local_decision_within_budget(
    gateway: Gateway, session_factory: SessionFactory
) -> None:
    gateway.ctx.settings = gateway.settings.model_copy(update={"authorize_budget_s": 0.5})
    gateway.ctx.authorizer._settings = gateway.ctx.settings
    cb = await seed_charger(session_factory)
    id_tag = await seed_card(session_factory, prefix="SLOW")
    async with charger_session(gateway, cb) as cp:
        began = time.monotonic()
        answer = await cp.call(call.Authorize(id_tag=id_tag))
        elapsed = time.monotonic() - began
    assert answer.id_tag_info["status"] == "Accepted"
    assert elapsed < 2.0
    assert await _intent_workflow(session_factory, cb, id_tag) is not None


async def test_temporal_unreachable_answers_locally(
    offline_gateway: Gateway, session_factory: SessionFactory
) -> None:
    cb = await seed_charger(session_factory)
    good = await seed_card(session_factory)
    blocked = await seed_card(session_factory, blocked=True)
    expiring = datetime.now(UTC) + timedelta(days=3)
    with_expiry = await seed_card(session_factory, expires_at=expiring)
    async with charger_session(offline_gateway, cb) as cp:
        began = time.monotonic()
        ok = await cp.call(call.Authorize(id_tag=good))
        assert time.monotonic() - began < 1.0
        no = await cp.call(call.Authorize(id_tag=blocked))
        later = await cp.call(call.Authorize(id_tag=with_expiry))
    assert ok.id_tag_info["status"] == "Accepted"  # fail-open: PostgreSQL knows the card
    assert no.id_tag_info["status"] == "Blocked"
    assert later.id_tag_info["expiry_date"].startswith(expiring.strftime("%Y-%m-%dT%H:%M"))
    assert await _intent_workflow(session_factory, cb, good) is not None
