"""Unsent billing lines: a line Lago refuses for good is alerted on (ERROR log, one operator
notification), listed, and sent again once the cause is fixed — exactly once in Lago.

Real session workflow, real worker, the Lago sandbox (its refusal: the customer has no
subscription). The CLI and the API route are thin over the same service functions.
"""

from __future__ import annotations

import logging
import uuid

import pytest
from sqlalchemy import select
from temporalio.client import Client
from temporalio.worker import Worker

from activities.lago import EnsureSubscriptionInput, LagoBilling, UpsertCustomerInput
from cli.main import build_parser
from config.settings import Settings
from db.billing_models import Notification
from db.engine import SessionFactory
from db.models import AuditLog, ChargingSession, EvCard, UserMapping
from services import billing_unsent
from services.actor import Actor
from services.context import ServiceContext
from tests.billing.test_session_lago import (  # noqa: F401  (fixtures)
    fake_gateway,
    lago_transaction_ids,
    lago_worker,
    seed,
)
from tests.sandbox.conftest import RunningSandbox
from tests.workflows.conftest import Seed, at
from tests.workflows.test_charging_session import started, tap, tx_id
from workflows.charging_session import ChargingSessionWorkflow
from workflows.messages import TransactionStopped

# A hang guard, not a measurement: each `polaris` process imports the whole CLI (seconds of
# CPU), which a loaded machine stretches to tens of seconds per command.
pytestmark = pytest.mark.timeout(600)


async def test_refused_lines_are_alerted_listed_and_resent_once(
    temporal_client: Client,
    lago_worker: Worker,  # noqa: F811
    task_queue: str,
    seed: Seed,  # noqa: F811
    session_factory: SessionFactory,
    billing: LagoBilling,
    lago_settings: Settings,
    lago_sandbox: RunningSandbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A driver whose Lago customer has no subscription yet: Lago cannot take usage for them.
    public_id = uuid.uuid4().hex[:8].upper()
    id_tag = f"U{public_id}"
    async with session_factory() as db, db.begin():
        db.add(EvCard(id_tag=id_tag))
        await db.flush()
        db.add(UserMapping(user_id=f"user-{public_id}", public_id=public_id, id_tag=id_tag))
    await billing.upsert_customer(UpsertCustomerInput(public_id=public_id, currency="EUR"))

    cb = await seed.charger()
    caplog.set_level(logging.ERROR, logger="activities.lago")
    _, handle = await tap(temporal_client, task_queue, cb, id_tag)
    tx = tx_id()
    await handle.signal(ChargingSessionWorkflow.transaction_started, started(1, tx, cb, id_tag, 0))
    await handle.signal(
        ChargingSessionWorkflow.transaction_stopped,
        TransactionStopped(event_id=2, transaction_id=tx, meter_stop_wh=4200, stopped_at=at(5)),
    )
    final = await handle.result()
    assert "lago_unsent" in final.flags

    # Alerted: an ERROR log and one operator notification (deduplicated per session).
    assert any(handle.id in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)
    async with session_factory() as db:
        notes = (
            await db.scalars(select(Notification).where(Notification.kind == "billing.unsent"))
        ).all()
    mine = [n for n in notes if n.data.get("session") == handle.id]
    assert len(mine) == 1 and mine[0].audience == "operators"

    ctx = ServiceContext(settings=lago_settings, sessions=session_factory, temporal=None)  # type: ignore[arg-type]
    actor = Actor(id="cli:test", role="admin", source="test")
    listed = await billing_unsent.list_unsent(ctx, actor, session=handle.id)
    assert [(r["session"], r["kind"], r["energy_wh"]) for r in listed] == [
        (handle.id, "final", 4200)
    ]
    assert handle.id in {r["session"] for r in await billing_unsent.list_unsent(ctx, actor)}

    # Still refused: nothing changes, the answer says so.
    again = await billing_unsent.resend_unsent(ctx, actor, session=handle.id)
    assert again["sessions"][0]["ok"] is False

    # The cause fixed in Lago, the resend goes through; a second resend sends nothing more.
    sub = await billing.ensure_subscription(EnsureSubscriptionInput(public_id=public_id))
    done = await billing_unsent.resend_unsent(ctx, actor, session=handle.id)
    assert done["sessions"] == [
        {"session": handle.id, "ok": True, "sent": 1, "duplicates": 0, "left": 0}
    ]
    assert await billing_unsent.list_unsent(ctx, actor, session=handle.id) == []
    assert (await billing_unsent.resend_unsent(ctx, actor, session=handle.id))["sessions"] == []
    assert lago_transaction_ids(lago_sandbox, sub.external_id) == {f"{handle.id}:1"}
    async with session_factory() as db:
        session_row = await db.get(ChargingSession, handle.id)
        audits = (
            await db.scalars(
                select(AuditLog).where(
                    AuditLog.action == "billing.unsent_resent", AuditLog.subject == handle.id
                )
            )
        ).all()
    assert session_row is not None and "lago_unsent" not in session_row.flags
    assert len(audits) == 3


def test_cli_commands_parse() -> None:
    parser = build_parser()
    args = parser.parse_args(["billing", "unsent", "list", "--session", "s-1", "--json"])
    assert (args.unsent_command, args.session, args.json) == ("list", "s-1", True)
    args = parser.parse_args(["billing", "unsent", "resend"])
    assert (args.unsent_command, args.session) == ("resend", None)
