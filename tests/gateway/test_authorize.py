"""Authorize: the local decision, the workflow's pre-authorization within budget, fallbacks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from ocpp.v16 import call
from sqlalchemy import select
from temporalio.client import Client

from config.settings import Settings
from db.engine import SessionFactory
from db.models import AuditLog, session_intents
from gateway.authorize import BUDGET_MISSES_BEFORE_SKIP
from gateway.main import Gateway
from tests.gateway.conftest import charger_session, seed_card, seed_charger
from tests.helpers import eventually

PAST = datetime(2020, 1, 1, tzinfo=UTC)


async def _intent_workflow(sf: SessionFactory, cb: str, id_tag: str) -> str | None:
    async with sf() as s:
        return await s.scalar(
            select(session_intents.c.workflow_id).where(
                session_intents.c.charge_box_id == cb, session_intents.c.id_tag == id_tag
            )
        )


async def _intent_status(sf: SessionFactory, cb: str, id_tag: str) -> str | None:
    async with sf() as s:
        return await s.scalar(
            select(session_intents.c.auth_status).where(
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
    assert workflow_id is not None and workflow_id.startswith(f"session:{cb}:tap:")
    assert id_tag not in workflow_id  # opaque: the idTag never shows in Temporal or Lago
    handle = temporal_client.get_workflow_handle(workflow_id)
    assert await handle.query("origin") == "tap"
    # The tap is remembered with the answer the charger got: the local one, or the workflow's
    # when it tightened it (then audited as a refusal decided by the workflow).
    assert await _intent_status(session_factory, cb, id_tag) == "Accepted"
    assert await _intent_status(session_factory, cb, denied) == "Blocked"
    async with session_factory() as s:
        audit = (await s.execute(select(AuditLog).where(AuditLog.subject == denied))).scalar_one()
    assert (audit.action, audit.details["decided_by"]) == ("authorize.rejected", "workflow")


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


@pytest.fixture
async def workerless_gateway(gw_settings: Settings) -> AsyncIterator[Gateway]:
    """Temporal is up but no worker polls the sessions queue: every pre-authorization is late."""
    settings = gw_settings.model_copy(update={"authorize_budget_s": 0.3})
    gw = Gateway(settings, relay_poll_interval_s=0.5)
    await gw.start()
    await asyncio.wait_for(gw.link.wait(), 30)
    try:
        yield gw
    finally:
        await gw.stop()


async def test_taps_stop_waiting_after_repeated_budget_misses(
    workerless_gateway: Gateway, session_factory: SessionFactory, temporal_client: Client
) -> None:
    gateway = workerless_gateway
    authorizer = gateway.ctx.authorizer
    cb = await seed_charger(session_factory)
    tags = [
        await seed_card(session_factory, prefix="MISS")
        for _ in range(BUDGET_MISSES_BEFORE_SKIP + 1)
    ]
    async with charger_session(gateway, cb) as cp:
        for tag in tags[:-1]:
            assert authorizer.waiting_for_workflow
            answer = await cp.call(call.Authorize(id_tag=tag))
            assert answer.id_tag_info["status"] == "Accepted"  # the local decision
        # Temporal missed the budget every time: the next tap is answered without waiting …
        assert not authorizer.waiting_for_workflow
        answer = await cp.call(call.Authorize(id_tag=tags[-1]))
        assert answer.id_tag_info["status"] == "Accepted"
    # … and its workflow was still started, in the background, for pre-authorization.
    workflow_id = await _intent_workflow(session_factory, cb, tags[-1])
    assert workflow_id is not None
    handle = temporal_client.get_workflow_handle(workflow_id)
    await eventually(handle.describe, timeout=30, message="workflow started in the background")
